# The first two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-faults bench bench-smoke lint worker migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# DEMO_DATABASE_URL=... runs it on that database instead (a dashboard's: see the README).
demo: $(STAMP)
	$(BIN)/account-reset demo $(if $(DEMO_DATABASE_URL),--database-url '$(DEMO_DATABASE_URL)')

test: $(STAMP)
	$(BIN)/pytest --ignore=tests/faults

# Crashes and outages with real signals and servers; prints each test's figures.
test-faults: $(STAMP)
	$(BIN)/pytest -s tests/faults

# The worker against Celery's no-op ceiling and bcrypt's; writes BENCHMARKS.md (a few minutes).
bench: $(STAMP)
	$(BIN)/python -m bench.run --output BENCHMARKS.md

# A small run that only checks the benchmark still works (CI).
bench-smoke: $(STAMP)
	$(BIN)/python -m bench.run --smoke

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker tasks schemas client bench tests

worker: $(STAMP)
	$(BIN)/account-reset worker

migrate: $(STAMP)
	$(BIN)/account-reset db upgrade

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache
