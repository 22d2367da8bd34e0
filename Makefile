# The two commands a new user needs: `make demo` and `make test`.
# Both create the virtual environment on first use (.venv, Python 3.11).

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# A pinned CPU wheel: an unpinned `torch` would pull a multi-GB CUDA build.
# On a CUDA machine: make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH ?= torch==2.13.0

MODEL ?= tiny
PROMPT ?= a red brick wall, rain, cinematic
FRAMES ?= 8
SIZE ?= 64x64
STEPS ?= 8
OUT ?= demo-out

.PHONY: demo test bench zip venv clean

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

zip: venv
	$(PY) tools/build_extension.py --output-dir dist

clean:
	rm -rf $(VENV) dist .pytest_cache
