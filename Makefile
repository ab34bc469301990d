# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The real engines (vLLM, Aphrodite) live in a venv of their own: ~3 GB, built once and reused.
ENGINE_VENV ?= .venv-engines

.PHONY: demo test test-unit lint bench dist check-dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

DEMO_INCIDENTS ?= demo-output/incidents.db
demo: $(STAMP)
	rm -rf $(dir $(DEMO_INCIDENTS))postmortems $(DEMO_INCIDENTS)*
	$(PY) -m aphrodite_sla.cli simulate --scenario mixed --compare --incidents-db $(DEMO_INCIDENTS)
	$(PY) -m aphrodite_sla.cli incidents list --store $(DEMO_INCIDENTS) --limit 100
	@echo "incident console on these incidents: $(PY) -m aphrodite_sla.cli incidents dashboard --store $(DEMO_INCIDENTS) --port 8080"

test: $(STAMP) lint
	$(PY) -m pytest
	scripts/check_wheel.sh $(PY)
	scripts/engine_venv.sh $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/python -m pytest -o addopts="-ra" tests/contract

test-unit: $(STAMP)
	$(PY) -m pytest

# ruff (style, bugs) on everything, mypy (types) on the package
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# the wheel and sdist the README installs from (dist/), checked by twine
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --no-isolation --sdist --wheel --outdir dist .
	$(PY) -m twine check --strict dist/*

# make dist, then install the wheel into a fresh venv and check its entry points (run by make test)
check-dist: $(STAMP)
	scripts/check_wheel.sh $(PY)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(ENGINE_VENV) .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
