# The two quick-start commands:
#   make demo   set up .venv and run the offline demo study end to end
#   make test   set up .venv and run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist

# Quick gates (docs/testing.md):
#   make check      formatting, lint and a dry run of the paper's plan (under a minute)
#   make test-fast  every test that starts neither the workflow nor SLURM (under 5 minutes)
PYTHON_SOURCES := src workflow/scripts benchmarks tests
RULE_SOURCES := Snakefile workflow/rules/

.PHONY: setup demo test test-fast check lint format fashion-mnist benchmark

# GPU=1 (make setup GPU=1, make demo GPU=1, ...): also the gpu extra, TensorFlow and JAX
# with their CUDA libraries from PyPI, for a machine with NVIDIA GPUs.
GPU ?= 0
comma := ,
EXTRAS := test$(if $(filter 1,$(GPU)),$(comma)gpu)
INSTALLED := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu)

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/snakemake --cores 2 --configfile config/demo.yaml --report results/report.html --report-after-run

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

test: setup fashion-mnist
	FASHION_MNIST_DIR=$(FASHION_MNIST_DIR) $(BIN)/pytest

# Training throughput against the paper's ImageDataGenerator recipe (benchmarks/README.md).
benchmark: setup
	$(BIN)/python benchmarks/benchmark_training.py

test-fast: setup fashion-mnist
	FASHION_MNIST_DIR=$(FASHION_MNIST_DIR) $(BIN)/pytest -m "not workflow"

check: setup
	@start=$$(date +%s); \
	$(BIN)/snakefmt --check $(RULE_SOURCES) && \
	$(BIN)/ruff format --check $(PYTHON_SOURCES) && \
	$(BIN)/ruff check $(PYTHON_SOURCES) && \
	$(BIN)/snakemake --lint && \
	$(BIN)/snakemake --dry-run --quiet rules && \
	echo "check: passed in $$(( $$(date +%s) - start )) s"

lint: check

format: setup
	$(BIN)/snakefmt $(RULE_SOURCES)
	$(BIN)/ruff format $(PYTHON_SOURCES)
	$(BIN)/ruff check --fix $(PYTHON_SOURCES)
