# The two quick-start commands:
#   make demo   set up .venv and run the offline demo study end to end
#   make test   set up .venv and run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist

.PHONY: setup demo test lint format fashion-mnist benchmark

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
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

lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules/

format: setup
	$(BIN)/snakefmt Snakefile workflow/rules/
