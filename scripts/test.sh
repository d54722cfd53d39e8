#!/usr/bin/env bash
# Install strangler with its test tools in .venv, start the two local ActiveMQ brokers
# (installing Debian's activemq package when missing, and prometheus for the rollout
# tests), then lint, type-check and test.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k mirror`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null 2>&1; then
  echo "test.sh: installing a Java runtime for ActiveMQ" >&2
  apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null
fi
if ! command -v prometheus >/dev/null 2>&1; then
  # tests/integration/test_rollout.py runs a real Prometheus on loopback
  echo "test.sh: installing Prometheus" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

bash scripts/brokers.sh start

.venv/bin/ruff check strangler tests
.venv/bin/ruff format --check strangler tests
.venv/bin/mypy strangler
# The layer and no-cycle contracts in pyproject.toml ([tool.importlinter]).
.venv/bin/lint-imports --no-cache
# Tests and bench are type-checked too; tests/integration alone, as its conftest.py and
# tests/unit/aws/conftest.py would otherwise be two modules named "conftest".
.venv/bin/mypy --strict bench tests/unit
.venv/bin/mypy --strict tests/integration
.venv/bin/python -m pytest -p no:cacheprovider "$@"
