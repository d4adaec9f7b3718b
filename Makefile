# Two commands do all the set-up: `make demo` and `make test` each create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
# A plain `torch` requirement would fetch a multi-GB CUDA build; pin the CPU build first (override freely).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/voxaudit demo

test: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(VENV)/.installed
	$(BIN)/python bench/synth_speed.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
