# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test bench install install-dev clean

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

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

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
test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: the gate's benchmarks (warm decision, cold start, requests per decision); they print their figures
bench: install-dev
	$(BIN)/python bench/authorizer_warm.py
	$(BIN)/python bench/authorizer_cold.py

clean:
	rm -rf $(VENV) .pytest_cache staticfiles
