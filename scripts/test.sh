#!/usr/bin/env bash
# Install strangler with its test tools in .venv, start the two local ActiveMQ brokers
# (installing Debian's activemq package when missing), then lint, type-check and test.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k mirror`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null 2>&1; then
  echo "test.sh: installing a Java runtime for ActiveMQ" >&2
  apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null
fi
if ! command -v promtool >/dev/null 2>&1; then
  # deploy/observability's alerting rules are checked and unit-tested with promtool.
  echo "test.sh: installing Debian's prometheus package for promtool" >&2
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
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
# Tests and bench are type-checked too; tests/integration alone, as its conftest.py and
# tests/unit/aws/conftest.py would otherwise be two modules named "conftest".
.venv/bin/mypy --strict bench tests/unit
.venv/bin/mypy --strict tests/integration
.venv/bin/python -m pytest -p no:cacheprovider "$@"
