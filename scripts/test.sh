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
# gcc and the Python headers build the compiled frame pump (setup.py, Cython). Without
# them the install still succeeds, on the pure-Python pump, which must not be all we test.
if ! command -v gcc >/dev/null 2>&1 || ! python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  echo "test.sh: installing gcc and python3-dev for the compiled frame pump" >&2
  apt-get update -qq && apt-get install -y -qq gcc python3-dev >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
# The suites below run on the compiled build (the integration suite and the fault matrix
# included), so a failed compile stops here rather than testing the fallback twice.
.venv/bin/python -c 'import sys; from strangler.stomp import native
sys.exit(None if native.BUILD == "compiled" else "test.sh: frame pump: " + native.BUILD_NOTE)'

bash scripts/brokers.sh start

.venv/bin/ruff check strangler tests
.venv/bin/ruff format --check strangler tests
.venv/bin/mypy strangler
# Tests and bench are type-checked too; tests/integration alone, as its conftest.py and
# tests/unit/aws/conftest.py would otherwise be two modules named "conftest".
.venv/bin/mypy --strict bench tests/unit
.venv/bin/mypy --strict tests/integration
.venv/bin/python -m pytest -p no:cacheprovider "$@"
if [ $# -eq 0 ]; then
  # The unit suite again on the pure-Python frame pump (the reference and the fallback);
  # the differential test runs both builds whatever the variable says: once is enough.
  STRANGLER_NO_EXTENSIONS=1 .venv/bin/python -m pytest -p no:cacheprovider -q tests/unit \
    --deselect tests/unit/stomp/test_pump_differential.py
fi
