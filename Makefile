# The two commands of the README quick start:
#   make run   set up and run the service at http://127.0.0.1:8080 (development defaults)
#   make test  set up and run the checks (lint, content validation) and the whole test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint validate format

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(BIN)/.installed
	CDS_REQUIRE_JWT=$${CDS_REQUIRE_JWT:-false} CDS_LOG_FORMAT=$${CDS_LOG_FORMAT:-text} WEB_CONCURRENCY=$${WEB_CONCURRENCY:-2} \
		$(BIN)/gunicorn -c gunicorn.conf.py --bind 127.0.0.1:8080 wsgi:app

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Checks guideline_data as informatics staff do (prints each problem with file, line and field).
validate: $(BIN)/.installed
	$(BIN)/flask --app wsgi content validate

test: lint validate
	$(BIN)/python -m pytest

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
