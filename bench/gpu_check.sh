#!/usr/bin/env bash
# GPU check for ZS² at Stable Diffusion 1.5 size (random weights, fp16): speed vs a plain batch and
# Text2Video-Zero, peak memory vs frames with/without chunking. See bench/gpu_check.py.
#
# For a machine with torch, transformers, accelerate, safetensors and pillow but no diffusers and no
# network: the diffusers wheel is installed from a folder (or file) given as $1, else from
# ./wheels/diffusers-*.whl, with --no-deps --no-index. Nothing is downloaded.
#
#   bash bench/gpu_check.sh [WHEEL_DIR_OR_FILE] [gpu_check.py options...]
#   bash bench/gpu_check.sh wheels --repeats 2          # e.g.
#   bash bench/gpu_check.sh wheels --fast-only          # only the issue-16 table: plain / --fast /
#                                                       # --cache-interval 3 / both, 16 frames 512², 25 steps
#   bash bench/gpu_check.sh wheels --draft-only         # only the issue-15 draft preset vs the default job,
#                                                       # 8 frames 512² (a rank-64 LoRA when peft is there)
#   bash bench/gpu_check.sh wheels --previews-only      # only the issue-15 table: live previews every 5 / off
#   bash bench/gpu_check.sh wheels --no-fast            # every section but the fast paths (no compiles)
# The zss serve section runs after a full run only (not with --*-only or --smoke).
#
# Results are printed and, if $OUT is set, written to $OUT/gpu_check.json (and the log to
# $OUT/gpu_check.log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python

WHEEL_SOURCE=""
if [[ $# -gt 0 && ( -d "$1" || "$1" == *.whl ) ]]; then
    WHEEL_SOURCE="$1"
    shift
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

if "$PYTHON" -c "import diffusers" >/dev/null 2>&1; then
    echo "diffusers already importable: $("$PYTHON" -c 'import diffusers; print(diffusers.__version__, diffusers.__file__)')"
else
    if [[ -z "$WHEEL_SOURCE" ]]; then
        WHEEL_SOURCE="$ROOT/wheels"
    fi
    if [[ -d "$WHEEL_SOURCE" ]]; then
        WHEEL="$(ls -1 "$WHEEL_SOURCE"/diffusers-*.whl 2>/dev/null | sort -V | tail -n 1 || true)"
    else
        WHEEL="$WHEEL_SOURCE"
    fi
    if [[ -z "${WHEEL:-}" || ! -f "$WHEEL" ]]; then
        echo "ERROR: diffusers is not installed and no diffusers-*.whl was found in '$WHEEL_SOURCE'." >&2
        echo "Give the wheel's folder or file as the first argument, or put it in ./wheels/." >&2
        exit 2
    fi
    echo "installing $WHEEL (--no-deps --no-index)"
    if ! "$PYTHON" -m pip install --quiet --no-deps --no-index "$WHEEL"; then
        # No write access to site-packages: install into a private folder instead.
        TARGET="${TMPDIR:-/tmp}/zss-diffusers"
        echo "pip install failed; installing into $TARGET instead"
        "$PYTHON" -m pip install --quiet --no-deps --no-index --target "$TARGET" "$WHEEL"
        export PYTHONPATH="$TARGET:$PYTHONPATH"
    fi
fi

# Fail early with a clear message if something diffusers needs at import time is missing.
"$PYTHON" - <<'EOF'
import importlib, sys
missing = []
for name in ("torch", "transformers", "safetensors", "PIL", "numpy", "diffusers"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001
        missing.append(f"{name}: {type(exc).__name__}: {exc}")
if missing:
    sys.exit("ERROR: cannot import:\n  " + "\n  ".join(missing))
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""))
EOF

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    "$PYTHON" -u bench/gpu_check.py "$@" 2>&1 | tee "$OUT/gpu_check.log"
else
    "$PYTHON" -u bench/gpu_check.py "$@"
fi

# zss serve on this GPU machine over loopback (issue 13): the same job through the local worker and
# through the server (bench/serve.py: remote overhead, then a short many-client load test). Needs
# FastAPI + uvicorn: installed from the wheel folder when given (pip --no-index --find-links), else skipped.
if [[ " $* " != *" --fast-only "* && " $* " != *" --previews-only "* && " $* " != *" --smoke "* ]]; then
    if ! "$PYTHON" -c "import fastapi, uvicorn" >/dev/null 2>&1 && [[ -d "${WHEEL_SOURCE:-$ROOT/wheels}" ]]; then
        "$PYTHON" -m pip install --quiet --no-index --find-links "${WHEEL_SOURCE:-$ROOT/wheels}" fastapi uvicorn \
            || echo "could not install fastapi/uvicorn from ${WHEEL_SOURCE:-$ROOT/wheels}"
    fi
    if "$PYTHON" -c "import fastapi, uvicorn" >/dev/null 2>&1; then
        echo; echo "== zss serve over loopback (bench/serve.py) =="
        if [[ -n "${OUT:-}" ]]; then
            "$PYTHON" -u bench/serve.py --frames 16 --steps 10 --repeats 3 --clients 20 --duration 20 2>&1 \
                | tee "$OUT/serve.log"
        else
            "$PYTHON" -u bench/serve.py --frames 16 --steps 10 --repeats 3 --clients 20 --duration 20
        fi
    else
        echo "zss serve section skipped: fastapi and uvicorn are not installed (put their wheels and their"
        echo "dependencies' wheels in the wheel folder)."
    fi
fi
