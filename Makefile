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
.PHONY: install-locked lock test-floors test-hydra14

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

bench: install  ## speed and accuracy figures quoted in docs/benchmarks.md
	$(BIN)/python bench/run_all.py $(ARGS)

# The documentation site (mkdocs.yml; the configuration reference is generated from conf/ at build time).
# --strict: a broken link, a missing page or anchor, a reference that does not resolve fails the build.
# pyproject.toml pins mkdocs below 2, so the plugins' banners about MkDocs 2 are silenced.
.PHONY: docs docs-build
MKDOCS := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs
docs-build: install  ## build the documentation into site/, strictly (run in CI)
	$(MKDOCS) build --strict --clean --site-dir site

docs: install  ## the documentation on http://127.0.0.1:8001/, rebuilt on every change (make docs ARGS="-a …")
	$(MKDOCS) serve -a 127.0.0.1:8001 $(ARGS)

serve: install  ## the API and drawing page on http://127.0.0.1:8000/ (make serve ARGS="ckpt_path=…/best.ckpt")
	$(BIN)/python -m mnistlab.serve $(ARGS)

# each existing one of multirun/ (sweeps) and outputs/ (single runs) under its own name, so that a run reads
# multirun/<date>/<time>/<job>/<swept choices> or outputs/<date>/<time>; nothing else of this folder is walked
comma := ,
TB_SPEC = $(subst $() ,$(comma),$(foreach d,$(wildcard multirun outputs),$(d):$(d)))
tensorboard: install  ## TensorBoard on the sweeps and runs of this folder (make tensorboard ARGS="--port 6007")
	@test -n "$(TB_SPEC)" || { echo "make tensorboard: no multirun/ or outputs/ here yet; train first (make train)" >&2; exit 2; }
	$(BIN)/tensorboard --logdir_spec $(TB_SPEC) $(ARGS)

# The environment of the README's figures, exactly: every package at the version requirements.lock records
# (`make install` takes the newest that pyproject.toml allows instead).
install-locked:  ## .venv with the versions of requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.lock 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	$(BIN)/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

# requirements.lock: what `make install` resolves to now, for this Python and Linux x86_64 (uv, run from a
# throwaway venv), to commit with the figures measured in it. The versions it already records are kept where
# pyproject.toml still allows them; LOCK_ARGS=--upgrade resolves everything afresh.
LOCK_ARGS ?=
lock:  ## write requirements.lock from pyproject.toml
	rm -rf .venv-uv && $(PYTHON) -m venv .venv-uv && .venv-uv/bin/python -m pip install -q uv
	.venv-uv/bin/uv pip compile pyproject.toml --extra all --extra dev \
	  --python-version "$$($(PYTHON) -c 'import platform; print(platform.python_version())')" \
	  --python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock' --quiet $(LOCK_ARGS) -o requirements.lock
	rm -rf .venv-uv

# The floors: .ci/floors.txt pins the oldest release of each direct dependency that pyproject.toml allows (what
# it does not name resolves to its newest), in a venv of their own; FLOORS_TESTS reach every dependency
# (docs/how-to/dependencies.md says which test covers which).
FLOORS_VENV := .venv-floors
FLOORS_STAMP := $(FLOORS_VENV)/.installed-$(shell cat pyproject.toml .ci/floors.txt | cksum | cut -d' ' -f1)
FLOORS_TESTS := tests/test_dependencies.py tests/test_data.py tests/test_statistics.py tests/test_search_units.py \
  tests/test_sweeper_suites.py tests/test_search_errors.py \
  tests/test_cli.py::test_run_writes_every_file tests/test_cli.py::test_tensorboard_has_curves_and_one_hparams_session \
  tests/test_cli.py::test_evaluate_reproduces_the_test_metrics \
  tests/test_analysis.py::test_sweep_report_main_effects_and_seed_variance \
  tests/test_factors.py::test_importances_are_computed_for_a_conditional_space_and_named \
  tests/test_datasets.py::test_tiny_imagenet_splits_cache_and_grayscale tests/test_datasets.py::test_hf_path_may_be_parquet_files \
  tests/test_own_data.py::test_hugging_face_dataset_with_class_labels_and_strings \
  tests/test_serve.py::test_openapi_documents_every_answer_and_docs_need_no_network \
  tests/test_serve.py::test_predict_returns_label_probabilities_and_the_input_the_model_saw \
  tests/test_serve.py::test_bad_uploads_get_a_json_error_never_a_500 \
  tests/test_serve.py::test_export_onnx_and_torchscript_agree_with_the_checkpoint \
  tests/test_serve.py::test_health_answers_when_every_connection_is_taken \
  tests/test_package.py::test_mlflow_gets_the_hparams_row_and_metrics tests/test_package.py::test_quickstart_notebook_runs \
  tests/test_browser.py::test_api_docs_render_offline
$(FLOORS_STAMP): pyproject.toml .ci/floors.txt
	test -x $(FLOORS_VENV)/bin/python || $(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install -q -c .ci/floors.txt -e '.[all,dev]' 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	rm -f $(FLOORS_VENV)/.installed-* && touch $@

test-floors: $(FLOORS_STAMP)  ## a quick part of the suite on the oldest versions pyproject.toml allows
	$(FLOORS_VENV)/bin/ruff check . && $(FLOORS_VENV)/bin/ruff format --check .
	MNISTLAB_FLOORS=1 OMP_NUM_THREADS=1 $(FLOORS_VENV)/bin/python -m pytest -q -n auto --dist loadfile $(FLOORS_TESTS)

# Hydra 1.4 (a pre-release, .ci/hydra14.txt) in front of .venv: .venv-hydra14 holds those packages and the
# commands alone and reads everything else from .venv, so nothing else differs from `make test`.
HYDRA14_VENV := .venv-hydra14
HYDRA14_TESTS := tests/test_dependencies.py tests/test_recipe_group.py tests/test_presets.py tests/test_joblib_sweep.py \
  tests/test_search_units.py tests/test_sweeper_suites.py tests/test_search_errors.py \
  tests/test_catalogue.py::test_hydra_composition_errors_name_the_closest_key tests/test_catalogue.py::test_bad_input_is_one_line \
  tests/test_cli.py::test_help_is_fast_because_nothing_heavy_is_imported tests/test_cli.py::test_each_help_lists_its_own_groups_only \
  tests/test_cli.py::test_bad_input_is_one_clear_line tests/test_cli.py::test_multirun_gives_one_hparams_row_per_run \
  tests/test_reliability.py::test_sigterm_in_a_sweep_still_writes_the_summary_and_report \
  tests/test_reliability.py::test_resume_with_more_epochs_extends_the_schedule_in_a_copied_run_dir \
  tests/test_security.py::test_resume_does_not_replay_overrides_that_name_code \
  tests/test_run_dirs.py::test_a_crafted_run_dir_cannot_choose_paths_loggers_or_callbacks \
  tests/test_package.py::test_python_api_runs_a_sweep_and_raises_config_errors tests/test_package.py::test_tab_completion_lists_the_optimizers \
  tests/test_package.py::test_a_missing_extra_is_one_line_naming_the_install tests/test_package.py::test_mlflow_gets_the_hparams_row_and_metrics
test-hydra14: install  ## a part of the suite on Hydra 1.4
	rm -rf $(HYDRA14_VENV) && $(PYTHON) -m venv --without-pip $(HYDRA14_VENV)
	$(BIN)/python -m pip install -q --no-deps --target "$$($(HYDRA14_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" -r .ci/hydra14.txt 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	$(BIN)/python -c 'import site, sysconfig; print("import site; site.addsitedir(" + repr(sysconfig.get_paths()["purelib"]) + ")")' \
	  > "$$($(HYDRA14_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mnistlab-venv.pth"
	for script in $(BIN)/mnistlab-*; do \
	  sed '1s|.*|#!$(abspath $(HYDRA14_VENV))/bin/python|' "$$script" > $(HYDRA14_VENV)/bin/$$(basename "$$script"); \
	  chmod +x $(HYDRA14_VENV)/bin/$$(basename "$$script"); done
	MNISTLAB_EXPECT_HYDRA=1.4 OMP_NUM_THREADS=1 $(HYDRA14_VENV)/bin/python -m pytest -q -n auto --dist loadfile $(HYDRA14_TESTS)

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache lightning_logs
