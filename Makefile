# The two commands of the README quick start:
#   make run   set up and run the service at http://127.0.0.1:8080 (development defaults; PORT=9000 make run)
#   make test  set up (Python, npm and Debian packages) and run the checks and the whole test suite
VENV ?= .venv
PORT ?= 8080
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test test-deps lint check-valuesets validate format
NODE_STAMP := tests/fhir_server/node_modules/.installed-package-lock.json

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Development defaults; the database is migrated once (the deploy step), then gunicorn serves.
DEV_ENV := CDS_REQUIRE_JWT=$${CDS_REQUIRE_JWT:-false} CDS_LOG_FORMAT=$${CDS_LOG_FORMAT:-text}

run: $(BIN)/.installed
	$(DEV_ENV) $(BIN)/flask --app wsgi db upgrade
	$(DEV_ENV) WEB_CONCURRENCY=$${WEB_CONCURRENCY:-2} $(BIN)/gunicorn -c gunicorn.conf.py --bind 127.0.0.1:$(PORT) wsgi:app

lint: $(BIN)/.installed check-valuesets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Fails, naming each file, when guideline_data/valuesets/ is not what tools/valuesets/recipes/ produce
# (fix the recipe, or run `python tools/build_valuesets.py` and commit).
check-valuesets: $(BIN)/.installed
	$(BIN)/python tools/build_valuesets.py --check

# Checks guideline_data as informatics staff do (prints each problem with file, line and field). The command loads
# the content as the service does, which saves it as the last good copy: into a throwaway CDS_STATE_DIR here, so
# that a check (and `make test`) writes nothing into the checkout.
validate: $(BIN)/.installed
	$(BIN)/flask --app wsgi content validate

# What the tests need beyond Python: Debian's chromium (browser test) and nginx (scale-out test), and the
# test FHIR server's npm packages, installed from its lockfile. apt-get runs only when one is missing.
test-deps: $(NODE_STAMP)
	@if [ ! -x /usr/bin/chromium ] || ! { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium nginx; \
	fi

$(NODE_STAMP): tests/fhir_server/package-lock.json
	npm ci --prefix tests/fhir_server --no-audit --no-fund
	cp $< $@

# The whole suite, then the tests without external processes once more with the clinical date a year after the
# default of tests/clinical_date.py: nothing may depend on the day. No bytecode or cache is written to the checkout.
SHIFTED_TEST_TODAY := 2027-11-26

test: lint validate test-deps
	PYTHONDONTWRITEBYTECODE=1 $(BIN)/python -m pytest
	PYTHONDONTWRITEBYTECODE=1 LBP_TEST_TODAY=$(SHIFTED_TEST_TODAY) $(BIN)/python -m pytest -q -m "not processes"

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
