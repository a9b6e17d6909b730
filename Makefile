# Two commands: `make demo` and `make test`. Both build .venv from nothing (only Python and pip needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := constraints/tested.txt
STAMP := $(VENV)/.installed
# DeepSpeed JIT-builds its CPU ops on first use (1-3 min each); a stable cache outside the
# checkout lets every later run (and CI on the same machine) reuse them.
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/visdet-mmext/torch_extensions
# torch.compile's kernels (inductor's caches; default /tmp, lost at reboot): 11 s first steps
# become 2-3 s in later runs.
export TORCHINDUCTOR_CACHE_DIR ?= $(HOME)/.cache/visdet-mmext/inductor
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-fast venv list benchmark clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -c $(CONSTRAINTS) torch setuptools wheel
	# DeepSpeed ships only an sdist whose setup.py imports torch: build it against the torch above.
	$(PIP) install -c $(CONSTRAINTS) --no-build-isolation deepspeed
	$(PIP) install -c $(CONSTRAINTS) -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m visdet_mmext list
	$(PY) tools/train.py configs/demo/demo_muon.py

test: $(STAMP)
	$(PY) -m pytest -ra --durations=20

list: $(STAMP)
	$(PY) -m visdet_mmext list

benchmark: $(STAMP)
	$(PY) tools/benchmark_optimizers.py

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
