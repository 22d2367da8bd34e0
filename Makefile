# The two commands a new user needs: `make demo` and `make test`.
# Both create the virtual environment on first use (.venv, Python 3.11).

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# A pinned CPU wheel: an unpinned `torch` would pull a multi-GB CUDA build.
# On a CUDA machine: make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH ?= torch==2.13.0

MODEL ?= builtin:textures
PROMPT ?= blue marble veins
FRAMES ?= 16
SIZE ?= 64x64
STEPS ?= 25
OUT ?= demo-out

.PHONY: demo demo-restyle test lint test-blender test-matrix bench zip venv clean train-textures

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e '.[dev,blender,serve,ray,lora,prompts]'
	touch $@

demo: venv
	$(PY) -m zss_core.cli generate "$(PROMPT)" --model $(MODEL) --frames $(FRAMES) --size $(SIZE) --steps $(STEPS) --out $(OUT)

# Restyle an animation (issue 17), offline: a moving texture rendered here, restyled by
# `zss generate --init … --strength 0.6`, and a before/after sheet $(OUT)/restyle_before_after.png.
demo-restyle: venv
	$(PY) tools/demo_restyle.py --out $(OUT) --steps $(STEPS)

test: venv lint
	$(PY) -m pytest -q tests

# Lint and types (part of make test): ruff's linter and formatter on everything, mypy on zss_core
# (the stdlib seams protocol/client/process/schedule/defaults strictly); settings in pyproject.toml.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# Blender version matrix: the real-bpy tests (tests/blender) against one Blender, in its own venv
# (.venv-blender-<version>) holding only that exact bpy wheel and what the tests import. The generator
# the end-to-end tests start runs in .venv (torch, diffusers): ZSS_GENERATOR_PYTHON points there.
#   make test-blender BLENDER=4.2|4.5|5.0|newest      make test-matrix (oldest LTS + newest)
# To add a Blender: a BPY_<version> pin and, if it needs another Python, a BPY_PYTHON_<version>.
BLENDER ?= 5.0
BLENDER_VERSIONS := 4.2 4.5 5.0 5.3
BLENDER_NEWEST := 5.3
BLENDER_MATRIX ?= 4.2 newest
BPY_4.2 := 4.2.23
BPY_4.5 := 4.5.15
BPY_5.0 := 5.0.1
BPY_5.3 := 5.3.0
# bpy 5.1+ wheels exist only for CPython 3.13 (the pyenv copy when python3.13 is not on PATH).
BPY_PYTHON_5.3 = $(or $(shell for p in python3.13 $(HOME)/.pyenv/versions/3.13*/bin/python3.13; do \
	"$$p" -c '' 2>/dev/null && echo "$$p" && break; done),python3.13)
BLENDER_TEST_DEPS ?= "pytest>=8" pillow numpy av
BV := $(if $(filter newest,$(BLENDER)),$(BLENDER_NEWEST),$(BLENDER))
BVENV := .venv-blender-$(BV)
BSTAMP := $(BVENV)/.bpy-$(BPY_$(BV))

test-blender: venv $(BSTAMP)
	ZSS_GENERATOR_PYTHON=$(abspath $(PY)) $(BVENV)/bin/python -m pytest -q tests/blender

test-matrix: venv
	set -e; for v in $(BLENDER_MATRIX); do $(MAKE) --no-print-directory test-blender BLENDER=$$v; done

# The stamp names the pinned wheel: changing a pin rebuilds that venv from scratch.
$(BSTAMP):
	@test -n "$(BPY_$(BV))" || { echo "error: no bpy pin for BLENDER=$(BLENDER);" \
		"use one of: $(BLENDER_VERSIONS) newest" >&2; exit 2; }
	rm -rf $(BVENV)
	$(or $(BPY_PYTHON_$(BV)),$(PYTHON)) -m venv $(BVENV)
	$(BVENV)/bin/python -m pip install -q "bpy==$(BPY_$(BV))" $(BLENDER_TEST_DEPS)
	touch $@

bench: venv
	$(PY) bench/noise.py
	$(PY) bench/overhead.py
	$(PY) bench/memory.py
	$(PY) bench/coherence.py
	$(PY) bench/worker.py
	$(PY) bench/loop_tile.py
	$(PY) bench/blender.py

# Retrain the built-in texture model (zss_core/builtin/; ~2 h on 2 shared CPU cores, see train/README.md).
# Resumable: interrupt and run again, each stage continues from its last checkpoint (train/runs/) and
# --minutes is the stage's total. The ControlNet follows the UNet stage, so it can also run alongside it.
TRAIN := nice -n 19 $(PY) -m train.train_textures
TRAIN_THREADS ?= 1
train-textures: venv
	$(TRAIN) vae --resume --minutes 13 --threads $(TRAIN_THREADS)
	$(TRAIN) vae_decoder --resume --minutes 11 --threads $(TRAIN_THREADS)
	$(TRAIN) classifier --resume --minutes 9 --batch 64 --threads $(TRAIN_THREADS)
	$(TRAIN) unet --resume --minutes 52 --threads $(TRAIN_THREADS)
	$(TRAIN) controlnet --resume --minutes 25 --threads $(TRAIN_THREADS)
	$(TRAIN) export

# Needs only Python 3.11+: Blender's own builder is vendored as tools/blender_ext.py (no bpy, no .venv).
zip:
	$(PYTHON) tools/build_extension.py --output-dir dist

clean:
	rm -rf $(VENV) .venv-blender-* dist .pytest_cache
