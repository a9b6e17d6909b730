# Two commands: `make demo` and `make test`. Both build .venv from nothing (only Python and pip needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := constraints/tested.txt
STAMP := $(VENV)/.installed
# DeepSpeed JIT-builds its CPU ops on first use (~35 s each) into the package's folder,
# ~/.cache/visdet-mmext/torch_extensions, unless TORCH_EXTENSIONS_DIR names another (docs/deepspeed.md).
# torch.compile's kernels (inductor's caches; default /tmp, lost at reboot): 11 s first steps
# become 2-3 s in later runs.
export TORCHINDUCTOR_CACHE_DIR ?= $(HOME)/.cache/visdet-mmext/inductor
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-quick venv list benchmark gpu-wheels gpu-check gpu-rehearsal gpu-rehearsal-env clean

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
	$(VENV)/bin/visdet-mmext train demo/demo_muon

# Two workers (pytest-xdist), each taking whole files: a file's module fixtures run once. Most
# tests wait on subprocesses, so one worker leaves a core idle about a third of the time.
JOBS ?= 2
WORKERS := -n $(JOBS) --dist loadfile
test: $(STAMP)
	$(PY) -m pytest -ra --durations=20 $(WORKERS)

# The fast part, for development: no DeepSpeed engine, nothing marked slow.
test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not deepspeed and not slow" --durations=10 $(WORKERS)

list: $(STAMP)
	$(PY) -m visdet_mmext list

benchmark: $(STAMP)
	$(PY) tools/benchmark_optimizers.py

# The GPU check (docs/gpu.md). Here: fill the wheel cache it installs from on the GPU machine.
WHEELS ?= gpu_wheels
gpu-wheels: $(STAMP)
	$(PY) tools/gpu_wheels.py --dest $(WHEELS)

# On the GPU machine: its own python3 (CUDA torch) plus the wheels. DRY=1: the plan, checked here.
ifdef DRY
gpu-check: $(STAMP)
	$(PY) tools/gpu_check.py --dry-run $(if $(WHEELS),--wheels $(WHEELS))
else
gpu-check:
	$(PYTHON) tools/gpu_check.py $(if $(WHEELS),--wheels $(WHEELS))
endif

# The GPU check replayed here, without CUDA, in an environment of the GPU image's packages
# (torch 2.11 + CUDA 13.0 and its libraries, built once into ~/.cache/visdet-mmext/gpu-rehearsal
# and reused) plus the wheel cache: docs/gpu.md says what it proves. -env: the environment only
# (needs no .venv; CI builds it while the suite runs).
gpu-rehearsal: gpu-wheels
	$(PY) tools/gpu_rehearsal.py --wheels $(WHEELS)

gpu-rehearsal-env:
	$(PYTHON) tools/gpu_rehearsal.py --env-only

clean:
	rm -rf $(VENV) work_dirs .pytest_cache gpu_check_out gpu_rehearsal_out
