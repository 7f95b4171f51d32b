# The two quick-start commands:
#   make demo   set up .venv and run the offline demo study end to end
#   make test   set up .venv and run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist

# Quick gates (docs/testing.md):
#   make check      formatting, lint, types (mypy) and a dry run of the paper's plan
#                   (under a minute; .pre-commit-config.yaml runs the same before a commit)
#   make test-fast  every test that starts neither the workflow nor SLURM (6 to 7 minutes)
PYTHON_SOURCES := src workflow/scripts benchmarks tests requirements
RULE_SOURCES := Snakefile workflow/Snakefile workflow/rules/

.PHONY: setup lock demo test test-fast check lint format fashion-mnist benchmark

# GPU=1 (make setup GPU=1, make demo GPU=1, ...): also the gpu extra, TensorFlow and JAX
# with their CUDA libraries from PyPI, for a machine with NVIDIA GPUs.
GPU ?= 0
INSTALLED := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu)
# setup installs the exact versions of a lock file (docs/testing.md#the-lock-files), not
# whatever PyPI has newest, so that every machine runs what the tests passed with; then
# the package itself, editable, with --no-deps since the lock already holds its dependencies.
LOCK := requirements/$(if $(filter 1,$(GPU)),gpu,cpu).txt

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "make setup: the "\
	  "locked versions (requirements/) need Python 3.11 or newer, not " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# make lock             rewrite both lock files from pyproject.toml, keeping every pin
#                       that still satisfies it (after adding or changing a dependency),
#                       and envs/*.yaml (conda) with the locks' exact versions
# make lock UPGRADE=1   the newest versions pyproject.toml allows; then make setup, make test
# The CPU lock holds the dependencies with the test and jax extras, as setup installs
# them; the GPU lock adds the gpu extra under the CPU lock as a constraint, so the two
# share every version and only the CUDA libraries are its own. Both for CPython 3.11 on
# Linux x86_64, with every file's sha256 (pip then refuses a file that differs), made by
# uv at a fixed version in a venv of its own, so the project's venv stays the lock's.
UPGRADE ?= 0
UV_VERSION := 0.13.9
UV_VENV := $(VENV)/uv-$(UV_VERSION)
LOCK_OPTIONS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes
CPU_LOCK_COMMAND := uv pip compile pyproject.toml --extra test --extra jax $(LOCK_OPTIONS)
GPU_LOCK_COMMAND := $(CPU_LOCK_COMMAND) --extra gpu --constraint requirements/cpu.txt

# $(call write_lock,FILE,SETUP COMMAND,WHAT IT HOLDS,UV COMMAND): uv starts from a copy of
# FILE, whose pins it keeps where they still fit; the result, under a header saying what
# it is and how it was made, replaces FILE only if it differs, so that an unchanged lock
# does not make the next make setup reinstall.
define write_lock
	@if [ -f $(1) ]; then cp $(1) $(UV_VENV)/$(notdir $(1)); fi
	$(UV_VENV)/bin/$(4)$(if $(filter 1,$(UPGRADE)), --upgrade) --no-header --output-file $(UV_VENV)/$(notdir $(1)) >/dev/null
	@{ printf '%s\n' \
	    '# The exact versions `$(2)` installs: $(3).' \
	    '# Every file PyPI has of each version, with its sha256: pip refuses any other file.' \
	    '# For CPython 3.11 on Linux x86_64. Made by `make lock` (docs/testing.md) with' \
	    '# uv $(UV_VERSION), which ran' \
	    '#   $(4)' \
	    '# Do not edit by hand.'; \
	  cat $(UV_VENV)/$(notdir $(1)); } > $(UV_VENV)/$(notdir $(1)).with-header
	@if cmp -s $(UV_VENV)/$(notdir $(1)).with-header $(1); then echo "$(1): unchanged"; \
	else mv $(UV_VENV)/$(notdir $(1)).with-header $(1); echo "$(1): rewritten"; fi
endef

lock: $(UV_VENV)/bin/uv
	mkdir -p requirements
	$(call write_lock,requirements/cpu.txt,make setup,the dependencies with the test and jax extras,$(CPU_LOCK_COMMAND))
	$(call write_lock,requirements/gpu.txt,make setup GPU=1,every version of the CPU lock plus the gpu extra,$(GPU_LOCK_COMMAND))
	$(PYTHON) requirements/conda_environments.py

$(UV_VENV)/bin/uv:
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)

# The workflow writes the study's report itself at the end of the run (every study does:
# workflow/Snakefile's onsuccess); the demo then says where it is and what to try next.
DEMO_REPORT := results/demo/report.html
demo: setup
	$(BIN)/snakemake --cores 2 --configfile config/demo.yaml
	@echo "The demo's report: $(DEMO_REPORT)"
	@echo "Open it in a web browser (one self-contained file, no network needed): xdg-open $(DEMO_REPORT) (macOS: open $(DEMO_REPORT))"
	@echo "Next: source $(VENV)/bin/activate, then snakemake -n plans the paper's study; for a study of your own, see README.md, 'Your own study'"

# Real Fashion-MNIST images for the offline tests: Debian's package, installed when we are root.
fashion-mnist:
	@if [ ! -f "$(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "note: $(FASHION_MNIST_DIR) is missing; run 'sudo apt-get install dataset-fashion-mnist'" \
	         "or set FASHION_MNIST_DIR, else the Fashion-MNIST test fails"; \
	  fi; \
	fi

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file to each, so that
# one file's waiting (SLURM's queue, a job's start-up) overlaps another's computing;
# TEST_WORKERS=0 runs it in this process alone.
TEST_WORKERS ?= 2
# --no-loadscope-reorder: files in tests/conftest.py's LONGEST_FIRST order, not by count
XDIST := --numprocesses $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: setup fashion-mnist
	FASHION_MNIST_DIR=$(FASHION_MNIST_DIR) $(BIN)/pytest $(XDIST)

# Training throughput against the paper's ImageDataGenerator recipe (benchmarks/README.md).
benchmark: setup
	$(BIN)/python benchmarks/benchmark_training.py

test-fast: setup fashion-mnist
	FASHION_MNIST_DIR=$(FASHION_MNIST_DIR) $(BIN)/pytest -m "not workflow" $(XDIST)

check: setup
	@start=$$(date +%s); \
	$(BIN)/snakefmt --check $(RULE_SOURCES) && \
	$(BIN)/ruff format --check $(PYTHON_SOURCES) && \
	$(BIN)/ruff check $(PYTHON_SOURCES) && \
	$(BIN)/mypy && \
	$(BIN)/snakemake --lint && \
	$(BIN)/snakemake --dry-run --quiet rules && \
	echo "check: passed in $$(( $$(date +%s) - start )) s"

# make lint: another name for make check.
lint: check

format: setup
	$(BIN)/snakefmt $(RULE_SOURCES)
	$(BIN)/ruff format $(PYTHON_SOURCES)
	$(BIN)/ruff check --fix $(PYTHON_SOURCES)
