# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
GATEWAY_PORT ?= 8010
MOTO_PORT ?= 5005

DEPLOY_VENV ?= .venv-deploy
DEPLOY_BIN := $(DEPLOY_VENV)/bin
STAGE ?= dev

.PHONY: run mailbox test lint mypy mypy-baseline schema locks bench install install-local install-dev install-deploy zappa-package authorizer-zip clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when a requirements file changed.
$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# requirements-local.txt: what `make run` adds (a moto server).
$(VENV)/.installed-local: requirements.txt requirements-local.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-local.txt
	touch $@ $(VENV)/.installed

$(VENV)/.installed-dev: requirements.txt requirements-local.txt requirements-dev.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed $(VENV)/.installed-local

# Packaging tools (Zappa and its many dependencies) live in their own venv.
$(DEPLOY_VENV)/.installed: requirements-deploy.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_BIN)/pip install --quiet --upgrade pip
	$(DEPLOY_BIN)/pip install --quiet -r requirements-deploy.txt
	touch $@

install: $(VENV)/.installed
install-local: $(VENV)/.installed-local
install-dev: $(VENV)/.installed-dev
install-deploy: $(DEPLOY_VENV)/.installed

## run: the whole stack locally (moto for DynamoDB and SES, Django, the API Gateway stand-in); SQLite unless DATABASE_URL
run: export DJANGO_DEBUG ?= 1
run: install-local
	$(BIN)/python manage.py runstack --host $(HOST) --port $(PORT) --gateway-port $(GATEWAY_PORT) --moto-port $(MOTO_PORT)

## mailbox: every email `make run` sent, newest last (TO=address: one recipient's; COUNT=3: the latest 3; CREDENTIALS=1: CLIENT_ID=… CLIENT_SECRET=… for eval)
mailbox: export DJANGO_DEBUG ?= 1
mailbox: export DJANGO_LOG_LEVEL ?= WARNING
mailbox: install-local
	@$(BIN)/python manage.py mailbox --moto http://$(HOST):$(MOTO_PORT) $(if $(COUNT),--count $(COUNT)) $(if $(TO),--to $(TO)) $(if $(CREDENTIALS),--credentials)

## test: the whole suite against Postgres (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/creditportal)
# Without PYTEST_ARGS: first the authorizer's tests with Django not even loaded
# (the Lambda has none), then everything else.
test: install-dev install-deploy
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/python -m pytest -p no:django tests/authorizer
	DEPLOY_VENV=$(DEPLOY_VENV) $(BIN)/python -m pytest --ignore=tests/authorizer
else
	DEPLOY_VENV=$(DEPLOY_VENV) $(BIN)/python -m pytest $(PYTEST_ARGS)
endif

## lint: ruff (rules in pyproject.toml) and its formatter, checking only; the import boundaries (import-linter); types (mypy, against mypy-baseline.txt); no app module over 400 lines
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@$(MAKE) --no-print-directory mypy
	$(BIN)/python scripts/module_size.py

# mypy (settings in pyproject.toml) exits 1 for any error; mypy-baseline then fails only on errors
# not in mypy-baseline.txt, or listed there and gone (2: mypy itself failed). The Django plugin
# loads the settings: DEBUG's defaults stand in for the secrets.
MYPY_REPORT := .mypy_cache/report.txt
## mypy: the type check alone (incremental: its cache is .mypy_cache/)
mypy: install-dev
	@mkdir -p .mypy_cache
	@DJANGO_DEBUG=1 $(BIN)/mypy > $(MYPY_REPORT); status=$$?; \
	  if [ $$status -gt 1 ]; then cat $(MYPY_REPORT); exit $$status; fi
	@$(BIN)/mypy-baseline filter --no-colors < $(MYPY_REPORT)
	@echo "mypy: no new errors ($$(grep -c ': error:' mypy-baseline.txt) still to fix are listed in mypy-baseline.txt)"

## mypy-baseline: write mypy-baseline.txt anew from mypy's errors now (after fixing some; never to hide a new one)
mypy-baseline: install-dev
	@mkdir -p .mypy_cache
	-@DJANGO_DEBUG=1 $(BIN)/mypy > $(MYPY_REPORT)
	$(BIN)/mypy-baseline sync < $(MYPY_REPORT)

## schema: write docs/openapi.yaml, the API's OpenAPI schema, anew from the views (tests/test_openapi.py compares them)
schema: install-dev
	DJANGO_DEBUG=1 $(BIN)/python manage.py spectacular --file docs/openapi.yaml --validate --fail-on-warn

# pip-compile's flags for the lock files (each lock's header repeats them: tests/test_lock_files.py checks).
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
## locks: the Lambda packages' hash-pinned locks from their inputs (UPGRADE=1: newest versions the inputs allow; docs/deploy.md)
locks: install-dev
	$(PIP_COMPILE) $(if $(UPGRADE),--upgrade) --output-file=authorizer/requirements.txt authorizer/requirements.in
	$(PIP_COMPILE) $(if $(UPGRADE),--upgrade) --output-file=requirements-lambda.txt requirements.txt requirements-deploy.txt

## zappa-package: the Django app as a Zappa Lambda package for STAGE (dev), in dist/creditportal-$(STAGE).zip; no AWS needed
zappa-package: install install-deploy
	$(DEPLOY_BIN)/python -m deploy.build_zappa --stage $(STAGE) --app-python $(BIN)/python

## authorizer-zip: the authorizer alone, in dist/creditportal-authorizer.zip; fails over 5 MiB (AUTHORIZER_ARCH=arm64, AUTHORIZER_PYTHON=3.13: as deployed)
authorizer-zip: $(BIN)/python
	$(BIN)/python -m deploy.build_authorizer $(if $(AUTHORIZER_ARCH),--architecture $(AUTHORIZER_ARCH)) $(if $(AUTHORIZER_PYTHON),--python-version $(AUTHORIZER_PYTHON))

## bench: every benchmark in bench/, then bench/RESULTS.md from their figures (BENCH=name for one; see bench/run_all.py)
bench: install-dev
	$(BIN)/python bench/run_all.py $(BENCH)

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) .pytest_cache staticfiles build dist
