# Two commands on a fresh machine with Python 3.11 and make:  make run   |   make test
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?= quick
STAMP := $(VENV)/.installed

# 2 cores: OpenMP threads must not busy-wait beside another busy process.
export OMP_WAIT_POLICY := PASSIVE
export MPLBACKEND := Agg
export PYTHONDONTWRITEBYTECODE := 1
# UMAP and pynndescent compile with numba in every new kernel; a disk cache keeps what can be kept
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba

.PHONY: venv run test lab bench data clean-runs

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name zfutils --display-name "Python (zfutils)" >/dev/null
	touch $(STAMP)

## make run: the whole study with the default preset on the synthetic data
run: venv
	$(PY) -m zfutils.pipeline --preset $(PRESET)

## make test: every test, the notebooks under nbval included (one process: 2 cores)
test: venv
	$(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

## make lab: JupyterLab with the project's kernel
lab: venv
	$(VENV)/bin/jupyter lab notebooks

## make bench: every benchmark, one process after another; BENCH_ARGS="--quick-only" for a short run
bench: venv
	$(PY) -m benchmarks $(BENCH_ARGS)

data: venv
	$(PY) -m zfutils.data synth --out data/$(PRESET)/synth

clean-runs:
	rm -rf runs
