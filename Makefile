# Two commands do all the set-up: `make demo` and `make test` each create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
# A plain `torch` requirement would fetch a multi-GB CUDA build; pin the CPU build first (override freely).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint bench docs clean redis-server

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

# The Redis store's tests start a real redis-server; install it (Debian) when missing. If it
# cannot be installed those tests skip, and say so.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
		command -v apt-get >/dev/null 2>&1 && \
		{ $$SUDO apt-get install -y -q redis-server >/dev/null 2>&1 || \
		  { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q redis-server >/dev/null 2>&1; }; } || \
		echo "note: redis-server could not be installed; the Redis tests will skip"; }

test: $(VENV)/.installed-dev redis-server
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# The guides, results and API reference (mkdocs + mkdocstrings, see mkdocs.yml) into site/,
# warnings as errors: a broken link or a docstring the reference cannot read fails it.
docs: $(VENV)/.installed-dev
	$(BIN)/mkdocs build --strict

bench: $(VENV)/.installed
	$(BIN)/python bench/synth_speed.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
