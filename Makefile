# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

DEPLOY_VENV ?= .venv-deploy
DEPLOY_BIN := $(DEPLOY_VENV)/bin
STAGE ?= dev

.PHONY: run test bench install install-dev install-deploy zappa-package authorizer-zip clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when a requirements file changed.
$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

# Packaging tools (Zappa and its many dependencies) live in their own venv.
$(DEPLOY_VENV)/.installed: requirements-deploy.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_BIN)/pip install --quiet --upgrade pip
	$(DEPLOY_BIN)/pip install --quiet -r requirements-deploy.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-deploy: $(DEPLOY_VENV)/.installed

## run: a local CreditPortal on SQLite (or DATABASE_URL), with a demo staff login and product
run: export DJANGO_DEBUG ?= 1
run: export MIRROR_ENABLED ?= 0
run: install
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py seed_demo
	@echo
	@echo "CreditPortal is starting at http://$(HOST):$(PORT)/  (admin: http://$(HOST):$(PORT)/admin/)"
	@echo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## test: the whole suite against Postgres (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/creditportal)
test: install-dev install-deploy
	DEPLOY_VENV=$(DEPLOY_VENV) $(BIN)/python -m pytest $(PYTEST_ARGS)

## zappa-package: the Django app as a Zappa Lambda package for STAGE (dev), in dist/creditportal-$(STAGE).zip; no AWS needed
zappa-package: install install-deploy
	$(DEPLOY_BIN)/python -m deploy.build_zappa --stage $(STAGE) --app-python $(BIN)/python

## authorizer-zip: the authorizer alone, in dist/creditportal-authorizer.zip; fails over 5 MiB
authorizer-zip: $(BIN)/python
	$(BIN)/python -m deploy.build_authorizer

## bench: every benchmark in bench/ (each prints its figures and the command that reproduces them)
bench: install-dev
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

## bench: the gate's benchmarks (warm decision, cold start, requests per decision); they print their figures
bench: install-dev
	$(BIN)/python bench/authorizer_warm.py
	$(BIN)/python bench/authorizer_cold.py

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) .pytest_cache staticfiles build dist
