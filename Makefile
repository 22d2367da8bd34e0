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

.PHONY: demo test bench zip venv clean train-textures

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e '.[dev,blender]'
	touch $@

demo: venv
	$(PY) -m zss_core.cli generate "$(PROMPT)" --model $(MODEL) --frames $(FRAMES) --size $(SIZE) --steps $(STEPS) --out $(OUT)

test: venv
	$(PY) -m pytest -q tests

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

zip: venv
	$(PY) tools/build_extension.py --output-dir dist

clean:
	rm -rf $(VENV) dist .pytest_cache
