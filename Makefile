# Keyward. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Development defaults, each only where the caller has not set the variable.
ENV := set -a && . deploy/local/dev.env && set +a &&
PYTEST := $(ENV) $(PY) -m pytest

.PHONY: bench-full chaos chaos-full deploy-check help install stack-up stack-down stack-status migrate seed run test test-unit test-integration test-e2e lint fmt bench clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create the virtualenv with the pinned dependencies

stack-up: ## start PostgreSQL and Kafka locally (installs them if missing)
	bash deploy/local/stack.sh up

stack-down: ## stop the local PostgreSQL and Kafka
	bash deploy/local/stack.sh down

stack-status: ## is the local stack running?
	bash deploy/local/stack.sh status

migrate: $(STAMP) ## apply every service's migrations
	$(ENV) $(PY) -m shared.migrate

seed: migrate ## import the demo directory (organizations and administrators)
	$(ENV) $(PY) -m services.keys import-directory deploy/local/demo-directory.yaml

run: $(STAMP) stack-up seed ## start everything and print the console URL; Ctrl-C stops it all
	$(ENV) bash deploy/local/run.sh

test: $(STAMP) stack-up ## the whole suite: deploy-check first, then real PostgreSQL, Kafka, SMTP server and Chromium
	bash tests/e2e/install-chromium.sh
	PY=$(PY) bash deploy/tools/deploy-check.sh
	$(PYTEST) tests/unit tests/integration tests/e2e tests/chaos

test-unit: $(STAMP) ## unit tests (no I/O)
	$(PYTEST) tests/unit

test-integration: $(STAMP) stack-up ## integration tests (real PostgreSQL and Kafka)
	$(PYTEST) tests/integration

test-e2e: $(STAMP) stack-up ## end-to-end tests: the services as processes, Chromium driven by Playwright
	bash tests/e2e/install-chromium.sh
	$(PYTEST) tests/e2e

lint: $(STAMP) ## ruff format --check, ruff check, mypy
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services bench chaos deploy/local/mailsink.py

fmt: $(STAMP) ## format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP) stack-up ## quick benchmarks (ratios against baselines measured in the same run)
	$(ENV) $(PY) -m bench --quick

bench-full: $(STAMP) stack-up ## the benchmarks at the sizes of issue 6 (about eight minutes)
	$(ENV) $(PY) -m bench --full

chaos: $(STAMP) stack-up ## the guarantees under faults (issue 20): 3 brokers, 2 replicas of everything, a fault every ~20 s (about ten minutes; chaos/results.json)
	$(ENV) $(PY) -m chaos --duration 420 --every 20

chaos-full: $(STAMP) stack-up ## the same for forty minutes (at most 45), the figures of docs/reliability.md
	$(ENV) $(PY) -m chaos --duration 2400 --every 20

deploy-check: $(STAMP) ## render every kustomize build, validate it (kubeconform, vendored schemas), check and test the alerts (promtool)
	PY=$(PY) bash deploy/tools/deploy-check.sh

clean: ## remove the virtualenv and caches (not the stack's data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
