# minillm: two commands to a working textbook, from a fresh clone with only python3.11 present.
#   make lab    create .venv (first time only), then open the chapters in JupyterLab
#   make test   create .venv (first time only), then run every test and every notebook, as CI does
#
# CPU or CUDA torch: the venv gets torch==$(TORCH_VERSION) from pip's configured index (on Linux, PyPI's
# default wheel is a large CUDA build). To choose a build, name the PyTorch index for it, e.g.
#   make lab TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu      (small, CPU only)
#   make lab TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128    (CUDA 12.8)
# Changing TORCH_VERSION or TORCH_INDEX_URL later reinstalls torch (each choice has its own stamp file).

SHELL := /bin/bash

# Interpreter that creates the venv: python3.11 if present, else python3 (its version is checked below).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
TORCH_VERSION ?= 2.13.0
TORCH_INDEX_URL ?=
# pytest-xdist workers; each notebook runs wholly on one worker (--dist loadscope).
JOBS ?= 2

VENV := .venv
# Tests override BIN to point at the interpreter running them; everyone else leaves it alone.
BIN ?= $(VENV)/bin
# One stamp per torch choice, newer than requirements.txt and pyproject.toml: re-runs are instant.
STAMP := $(VENV)/.stamp-torch-$(TORCH_VERSION)$(if $(TORCH_INDEX_URL),-$(notdir $(TORCH_INDEX_URL)))

# The command `make lab` runs; factored out so tests/test_make_lab.py starts exactly this server.
# Root is the current directory (the repo) so chapters can reach bench/ and labs/; the browser opens on chapters/.
LAB_CMD := $(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/chapters$(if $(filter 0,$(shell id -u)), --allow-root)

# Every notebook nbval runs: chapters and labs (labs/solutions included), never checkpoint copies.
NOTEBOOKS := $(shell find chapters labs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null | sort)
# nbval only checks that cells run (--nbval-lax); notebooks are committed without outputs to compare.
NBVAL_FLAGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=600 --nbval-kernel-startup-timeout=120 \
	--nbval-sanitize-with tests/nbval_sanitize.cfg

.DEFAULT_GOAL := help
.PHONY: help setup lab test labs book gpu-check clean print-lab-cmd

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16
	@echo "Variables: TORCH_VERSION=$(TORCH_VERSION) TORCH_INDEX_URL=$(TORCH_INDEX_URL) JOBS=$(JOBS) PYTHON=$(PYTHON)"

setup: $(STAMP)  ## create .venv and install torch, requirements.txt and minillm (editable)

$(STAMP): requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "No python3.11 or python3 on PATH. Install Python 3.11, or run: make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "minillm needs Python >= 3.10 but $(PYTHON) is " + sys.version.split()[0] + ". Install python3.11, or run: make PYTHON=/path/to/python3.11")'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@# torch first: the build chosen here (CPU or CUDA) then satisfies requirements.txt's torch>=2.5 as is.
	$(VENV)/bin/python -m pip install "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(VENV)/bin/python -m pip install -r requirements.txt
	$(VENV)/bin/python -m pip install --no-deps -e .
	rm -f $(VENV)/.stamp-torch-*
	touch $@

lab: $(STAMP)  ## open the chapters in JupyterLab
	$(LAB_CMD)

# One pytest run for the package tests and the notebooks, so two workers share all the work.
# The browser test in tests/e2e skips itself when Chromium or playwright is missing.
# OMP_NUM_THREADS=1: each of the JOBS workers (and its notebook kernels) uses one core; two workers with
# torch's default of one thread per core each would oversubscribe the CPU and run many times slower.
test: $(STAMP)  ## run the package tests and every notebook (nbval), at the small "ci" size
	MINILLM_SIZE=ci MPLBACKEND=Agg OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadscope \
		tests $(NOTEBOOKS) $(NBVAL_FLAGS)

# On a CUDA machine, as it is: no venv, nothing installed (its own torch >= 2.5, triton >= 3.1, Python 3.10-3.12),
# minillm imported from this checkout. At most 8 minutes; bench/gpu_check.py says what runs. `make test` already
# runs its CPU rehearsal (tests/test_gpu_check.py: --smoke).
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_CHECK_OUT ?= bench/results/gpu/$(shell date -u +%Y-%m-%dT%H%M%SZ)
gpu-check:  ## on a CUDA GPU: gpu tests, attention, MFU and kernel benches, DDP smoke run (<= 8 min) into bench/results/gpu/
	PYTHONPATH=. $(GPU_PYTHON) bench/gpu_check.py --out $(GPU_CHECK_OUT)

# The rendered textbook (book/site.py): chapters executed at MINILLM_SIZE (ci unless set), labs as handed out.
book: $(STAMP)  ## build the textbook as a static website into _build/site/html (MINILLM_SIZE=laptop for full outputs)
	$(BIN)/python -m book.site build --size $(or $(MINILLM_SIZE),ci)

labs: $(STAMP)  ## regenerate the student notebooks in labs/ from labs/solutions/
	$(BIN)/python -m book.labs build

print-lab-cmd:  ## print the command `make lab` runs
	@echo '$(LAB_CMD)'

clean:  ## remove .venv, caches and run outputs
	rm -rf $(VENV) .pytest_cache *.egg-info runs out _build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +
