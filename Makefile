# The first two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-faults lint worker migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/account-reset demo

test: $(STAMP)
	$(BIN)/pytest --ignore=tests/faults

# Crashes and outages with real signals and servers; prints each test's figures.
test-faults: $(STAMP)
	$(BIN)/pytest -s tests/faults

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker tasks schemas client tests

worker: $(STAMP)
	$(BIN)/account-reset worker

migrate: $(STAMP)
	$(BIN)/account-reset db upgrade

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache
