# The two commands of the quick start (README.md):
#   make run   set up and run the service at http://127.0.0.1:8080 (development defaults; PORT=9000 make run)
#   make test  set up (Python, npm and Debian packages) and run the checks, the whole test suite (the wheel
#              included) and the container image's smoke test
VENV ?= .venv
PORT ?= 8080
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test test-deps lint check-valuesets validate format image-deps smoke-image check-manifests check-wheel
NODE_STAMP := tests/fhir_server/node_modules/.installed-package-lock.json

# Two stamps: `make run` installs only what the service needs (requirements.txt), so a fresh clone serves in
# seconds; the checks and tests install the rest (requirements-dev.txt: test, lint and benchmark tools).
$(BIN)/.installed-run: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(BIN)/.installed-run

# Development defaults; the database is migrated once (the deploy step), then granian serves (the production
# server, cds_service/web/server.py, as `lbp-cds serve` runs it).
DEV_ENV := CDS_REQUIRE_JWT=$${CDS_REQUIRE_JWT:-false} CDS_LOG_FORMAT=$${CDS_LOG_FORMAT:-text}

run: $(BIN)/.installed-run
	$(DEV_ENV) $(BIN)/flask --app wsgi db upgrade
	$(DEV_ENV) WEB_CONCURRENCY=$${WEB_CONCURRENCY:-2} CDS_BIND=127.0.0.1:$(PORT) $(BIN)/python -m cds_service.web.server

lint: $(BIN)/.installed check-valuesets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Containerfile

# Fails, naming each file, when guideline_data/valuesets/ is not what tools/valuesets/recipes/ produce
# (fix the recipe, or run `python tools/build_valuesets.py` and commit).
check-valuesets: $(BIN)/.installed
	$(BIN)/python tools/build_valuesets.py --check

# Checks guideline_data as informatics staff do (prints each problem with file, line and field). The command loads
# the content as the service does, which saves it as the last good copy: into a throwaway CDS_STATE_DIR here, so
# that a check (and `make test`) writes nothing into the checkout.
validate: $(BIN)/.installed
	$(BIN)/flask --app wsgi content validate

# What the tests need beyond Python: Debian's chromium (browser test), nginx (scale-out test) and prometheus
# (its promtool checks the alert rules), and the test FHIR server's npm packages, installed from its lockfile.
# apt-get runs only when one is missing.
test-deps: $(NODE_STAMP)
	@if [ ! -x /usr/bin/chromium ] || ! { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null \
		|| ! command -v promtool >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium nginx \
			prometheus; \
	fi

$(NODE_STAMP): tests/fhir_server/package-lock.json
	npm ci --prefix tests/fhir_server --no-audit --no-fund
	cp $< $@

# The wheel alone (part of the test suite): built, listed, installed into a fresh venv and served.
check-wheel: $(BIN)/.installed
	$(BIN)/python -m pytest -q tests/test_package.py

# Every Kubernetes manifest against the schemas of a current Kubernetes (shipped by kubernetes-validate, offline).
# A warning fails too: an apiVersion that Kubernetes removed is only a warning there.
K8S_VERSION := 1.37.0
check-manifests: $(BIN)/.installed
	@output=$$($(BIN)/kubernetes-validate --strict --kubernetes-version $(K8S_VERSION) deploy/kubernetes/*.yaml 2>&1); \
	status=$$?; echo "$$output"; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	if echo "$$output" | grep -q '^WARN'; then echo "check-manifests: a WARN line fails the check" >&2; exit 1; fi

# The container smoke test's Debian packages (podman with runc, mmdebstrap and what rootful podman runs with);
# apt-get runs only when one is missing.
IMAGE_DEBS := podman runc mmdebstrap uidmap slirp4netns fuse-overlayfs
image-deps:
	@missing=""; for package in $(IMAGE_DEBS); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

# Builds the image from Debian packages and runs it against PostgreSQL and Redis (tools/smoke_image.sh).
smoke-image: $(BIN)/.installed image-deps
	tools/smoke_image.sh

# The whole suite, then the tests without external processes once more with the clinical date a year after the
# default of tests/clinical_date.py: nothing may depend on the day. No bytecode or cache is written to the checkout.
SHIFTED_TEST_TODAY := 2027-11-26

test: lint validate check-manifests test-deps
	PYTHONDONTWRITEBYTECODE=1 $(BIN)/python -m pytest
	PYTHONDONTWRITEBYTECODE=1 LBP_TEST_TODAY=$(SHIFTED_TEST_TODAY) $(BIN)/python -m pytest -q -m "not processes"
	$(MAKE) --no-print-directory smoke-image

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
