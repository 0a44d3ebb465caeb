# `make train` and `make test` install what they need first (a .venv beside this file).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
ARGS ?=

# On machines without internet, a sibling shared/datasets folder (torchvision layout) is used when present.
ifeq ($(MNISTLAB_DATA_DIR),)
  ifneq ($(wildcard ../shared/datasets/MNIST/raw),)
    export MNISTLAB_DATA_DIR := $(abspath ../shared/datasets)
  endif
endif

.PHONY: install train test test-fast lint format bench tensorboard serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[all,dev]' 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

train: install  ## train and test the default CNN on MNIST (override anything: make train ARGS="optim=sgd")
	$(BIN)/python -m mnistlab.train $(ARGS)

# One test worker per core (pytest-xdist; a module's tests stay in one worker, which shares its fixtures), each
# torch with one thread: two workers of two threads on two cores spend their time waiting for each other.
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist loadfile

test: install  ## the whole suite, end-to-end tests on real data included
	$(PYTEST)

test-fast: install  ## skip the slow end-to-end tests
	$(PYTEST) -m "not slow"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: install  ## speed and accuracy figures quoted in the README
	$(BIN)/python bench/run_all.py $(ARGS)

serve: install  ## the API and drawing page on http://127.0.0.1:8000/ (make serve ARGS="ckpt_path=…/best.ckpt")
	$(BIN)/python -m mnistlab.serve $(ARGS)

# each existing one of multirun/ (sweeps) and outputs/ (single runs) under its own name, so that a run reads
# multirun/<date>/<time>/<job>/<swept choices> or outputs/<date>/<time>; nothing else of this folder is walked
comma := ,
TB_SPEC = $(subst $() ,$(comma),$(foreach d,$(wildcard multirun outputs),$(d):$(d)))
tensorboard: install  ## TensorBoard on the sweeps and runs of this folder (make tensorboard ARGS="--port 6007")
	@test -n "$(TB_SPEC)" || { echo "make tensorboard: no multirun/ or outputs/ here yet; train first (make train)" >&2; exit 2; }
	$(BIN)/tensorboard --logdir_spec $(TB_SPEC) $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache lightning_logs
