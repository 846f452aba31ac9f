# Two commands set everything up on a machine with python3, node/npm and make:
#   make demo   run the main job on embedded defaults
#   make test   ruff, mypy and the whole test suite (the offline infrastructure checks first)
#   make iac    only the infrastructure checks: Bicep, checkov, hooks (in .venv-iac)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
IAC    := .venv-iac
IAC_STAMP := $(IAC)/.installed

.PHONY: demo test iac lint bench clean

$(STAMP): requirements.txt requirements-train.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

# checkov pins many packages: it gets its own virtualenv, never the app's.
$(IAC_STAMP): requirements-iac.txt
	@test -x $(IAC)/bin/python || $(PYTHON) -m venv $(IAC)
	$(IAC)/bin/python -m pip install --quiet --upgrade pip
	$(IAC)/bin/python -m pip install --quiet -r requirements-iac.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: $(STAMP) node_modules/.installed
	$(PY) -m retrain demo

test: $(STAMP) node_modules/.installed iac
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest --ignore=tests/infra

# Offline: every Bicep file parses, checkov passes, settings and roles match the docs, the
# hooks pass shellcheck. Its conftest-free tests run under .venv-iac's own interpreter.
iac: $(IAC_STAMP)
	$(IAC)/bin/python -m pytest tests/infra --confcutdir=tests/infra -p no:cacheprovider -q

lint: $(STAMP) iac
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(STAMP) node_modules/.installed
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(IAC) node_modules .runs .models .demo .pytest_cache .ruff_cache
