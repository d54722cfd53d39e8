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
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  # tests/integration/test_rollout.py runs a real Prometheus on loopback, and
  # deploy/observability's alerting rules are checked and unit-tested with promtool.
  echo "test.sh: installing Debian's prometheus package (prometheus, promtool)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
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
# The layer and no-cycle contracts in pyproject.toml ([tool.importlinter]).
.venv/bin/lint-imports --no-cache
# Tests and bench are type-checked too; tests/integration alone, as its conftest.py and
# tests/unit/aws/conftest.py would otherwise be two modules named "conftest".
.venv/bin/mypy --strict bench tests/unit
.venv/bin/mypy --strict tests/integration

# The image's dependency locks (requirements/*.txt) match pyproject.toml (uv, dev extra).
bash scripts/lock.sh --check
# checkov over the Terraform module and the Kubernetes manifests, in its own
# venv (it pins an older boto3 and replaces python-hcl2's `hcl2` module). Every finding is
# fixed or skipped where it is, with the reason written beside it.
if [ ! -x .venv-checkov/bin/checkov ]; then
  .venv/bin/uv venv -q --python python3 .venv-checkov
  .venv/bin/uv pip install -q --python .venv-checkov/bin/python "checkov==3.3.30"
fi
.venv-checkov/bin/checkov --skip-download --quiet --compact \
  --framework terraform kubernetes -d infra/terraform -d deploy
if command -v terraform >/dev/null 2>&1; then
  TF_CLI_CONFIG_FILE=/dev/null CHECKPOINT_DISABLE=1 terraform fmt -check -diff -recursive infra/terraform
fi
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider)
if [ $# -gt 0 ]; then
  exec "${PYTEST[@]}" "$@"
fi
# The whole suite, in two stages (about 12 min here instead of 16 one after the other):
# 1. The fault matrix (its own pair of brokers; most of its ~6 min is paced producers and
#    broker restarts, not CPU) runs beside the unit suite, which needs no broker: first on
#    the compiled build, then again on the pure-Python frame pump (the reference and the
#    fallback; the differential test runs both builds whatever the variable says, so once
#    is enough). The matrix's output is shown when it ends.
# 2. The rest of the integration suite, alone (its tests time receipts and failovers).
matrix_log="$(mktemp)"
trap 'rm -f "$matrix_log"' EXIT
"${PYTEST[@]}" -q tests/integration/test_fault_matrix.py >"$matrix_log" 2>&1 &
matrix=$!
status=0
"${PYTEST[@]}" -q tests/unit || status=1
STRANGLER_NO_EXTENSIONS=1 "${PYTEST[@]}" -q tests/unit \
  --deselect tests/unit/stomp/test_pump_differential.py || status=1
matrix_status=0
wait "$matrix" || matrix_status=$?
echo "test.sh: the fault matrix (tests/integration/test_fault_matrix.py):"
cat "$matrix_log"
[ "$matrix_status" -eq 0 ] || status=1
"${PYTEST[@]}" tests/integration --ignore=tests/integration/test_fault_matrix.py || status=1
exit "$status"
