# On a machine with python3 (3.10 or newer), node/npm and make:
#   make install  .venv and node_modules only (what the demo, Core Tools and the CLI need)
#   make demo     run the main job on embedded defaults
#   make test     ruff, mypy and the whole test suite (the offline infrastructure checks first)
#   make iac      only the infrastructure checks: Bicep, checkov, hooks (in .venv-iac)
#   make local-settings  local.settings.json for `func start` (short settle, frequent timer)
#   make upload   put a generated batch into Azurite and post its one BlobCreated event to a
#                 local `func start` (BATCH=name; see docs/function-app.md)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
IAC    := .venv-iac
IAC_STAMP := $(IAC)/.installed

.PHONY: install demo test iac lint bench upload local-settings clean

# One line per step. The size is PyPI's Linux wheels, where torch is a CUDA build; for a CPU-only
# torch see "Install" in the README.
$(STAMP): requirements.txt requirements-train.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "make install: needs Python 3.10 or newer, found $$($(PYTHON) -V 2>&1 || echo none) at PYTHON=$(PYTHON); run: make install PYTHON=python3.11" >&2; exit 1; }
	@echo "install 1/4: creating $(VENV) with $$($(PYTHON) -V)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "install 2/4: upgrading pip"
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "install 3/4: requirements-dev.txt: the app, torch, the test tools (about 5.7 GB on Linux, a few minutes)"
	@$(PY) -m pip install --quiet -r requirements-dev.txt
	@echo "install 4/4: pip install -e . (retrain importable from any folder)"
	@PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps -e .  # quiet: setuptools' editable-mode notice
	@touch $@

# checkov pins many packages: it gets its own virtualenv, never the app's.
$(IAC_STAMP): requirements-iac.txt
	@test -x $(IAC)/bin/python || $(PYTHON) -m venv $(IAC)
	$(IAC)/bin/python -m pip install --quiet --upgrade pip
	$(IAC)/bin/python -m pip install --quiet -r requirements-iac.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	@echo "install: node_modules: Azurite from package-lock.json (about 370 MB)"
	@npm ci --no-audit --no-fund --loglevel=error >/dev/null  # errors still reach stderr
	@touch $@

install: $(STAMP) node_modules/.installed
	@echo "installed: $(VENV) ($$(du -sh $(VENV) | cut -f1)) and node_modules ($$(du -sh node_modules/ | cut -f1))"

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

# local.settings.json for `func start` with Azurite: the example plus a short settle time and a
# frequent timer (the deployed defaults stay as they are).
local-settings:
	$(PYTHON) scripts/local_settings.py

# BATCH=<name> (default: a timestamped one); HOST=<url> (default http://localhost:7071).
upload: $(STAMP)
	$(PY) scripts/upload_batch.py $(if $(BATCH),$(BATCH)) $(if $(HOST),--host $(HOST))

bench: $(STAMP) node_modules/.installed
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(IAC) node_modules .runs .models .demo .pytest_cache .ruff_cache *.egg-info
