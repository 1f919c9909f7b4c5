# Two commands for a fresh machine: `make demo` and `make test`.
# torch is installed first, pinned, because a bare `torch` requirement with no
# torch present pulls multi-GB CUDA wheels; with 2.13.0 present the package's
# `torch>=2.4` range is already satisfied and nothing more is fetched.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv install install-dev install-bench demo test test-fast bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python

# torch first (see above), then the package.
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-bench: $(VENV)/.installed-bench

demo: install
	$(BIN)/rlvlm train

test: install-dev
	$(BIN)/python -m pytest -q --durations=8

test-fast: install-dev
	$(BIN)/python -m pytest -q -m "not slow"

# Side by side with TRL (the [bench] extra), then the tables of docs/performance.md and the README.
bench: install-bench
	$(BIN)/python benchmarks/grpo_vs_trl.py --steps 5 --rounds 2 --levers --out runs/bench-final
	$(BIN)/python benchmarks/logprobs.py --out runs/bench
	$(BIN)/python benchmarks/scaling.py --out runs/bench
	$(BIN)/python benchmarks/numberline_phases.py --out runs/bench
	cp runs/bench/scaling.png docs/results/bench_scaling.png
	$(BIN)/python benchmarks/render_perf.py --main runs/bench-final --extra runs/bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
