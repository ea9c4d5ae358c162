# The first two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-faults bench bench-smoke dashboard-png lint docs worker migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# DEMO_DATABASE_URL=... runs it on that database instead (a dashboard's: see the README).
demo: $(STAMP)
	$(BIN)/account-reset demo $(if $(DEMO_DATABASE_URL),--database-url '$(DEMO_DATABASE_URL)')

# The unit ring first (no services, seconds), then integration and e2e (real Redis, databases
# and workers); the fault tests are `make test-faults`.
test: test-unit
	$(BIN)/pytest --ignore=tests/unit --ignore=tests/faults

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Crashes and outages with real signals and servers; prints each test's figures.
test-faults: $(STAMP)
	$(BIN)/pytest -s tests/faults

# The worker against Celery's no-op ceiling and bcrypt's; writes BENCHMARKS.md (a few minutes).
bench: $(STAMP)
	$(BIN)/python -m bench.run --output BENCHMARKS.md

# A small run that only checks the benchmark still works (CI).
bench-smoke: $(STAMP)
	$(BIN)/python -m bench.run --smoke

# docs/dashboard.png: the Grafana dashboard's panels over a real run of about a minute, drawn
# from Prometheus's answers to their queries (Debian's Prometheus; Grafana is on no registry).
dashboard-png: $(STAMP)
	$(BIN)/python -m bench.dashboard_snapshot --output docs/dashboard.png

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker tasks schemas client bench tests

# docs/settings.md from the settings classes' field descriptions (a unit test fails when stale).
docs: $(STAMP)
	$(BIN)/python -m worker.ops.settings_reference --output docs/settings.md

worker: $(STAMP)
	$(BIN)/account-reset worker

migrate: $(STAMP)
	$(BIN)/account-reset db upgrade

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache
