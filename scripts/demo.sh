#!/usr/bin/env bash
# The quickstart: start the two local brokers, run the proxy with the example routes.yaml,
# send a few messages per route through it, and show the facts it wrote. Stops the proxy
# at the end (the brokers keep running; `scripts/brokers.sh stop` stops them).
#
# Ports, to run beside anything else (defaults in brackets):
#   STRANGLER_LEGACY_PORT      the legacy broker              [61611]
#   STRANGLER_AMAZONMQ_PORT    the Amazon MQ stand-in (TLS)   [61614]
#   STRANGLER_DEMO_PORT        the proxy, for producers       [61613]
#   STRANGLER_DEMO_ADMIN_PORT  the proxy's admin HTTP         [9090]
# e.g. STRANGLER_LEGACY_PORT=62611 STRANGLER_AMAZONMQ_PORT=62614 STRANGLER_DEMO_PORT=62613 \
#      STRANGLER_DEMO_ADMIN_PORT=62090 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/strangler ] || ! .venv/bin/python -c "import stomp" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q -e '.[dev]'
fi
bash scripts/brokers.sh start
eval "$(bash scripts/brokers.sh env)"

port="${STRANGLER_DEMO_PORT:-61613}"
admin="${STRANGLER_DEMO_ADMIN_PORT:-9090}"
facts="$(mktemp -t strangler-facts.XXXXXX.jsonl)"
# The example routes.yaml names the default ports: a copy names the brokers started above.
routes="$(mktemp -t strangler-routes.XXXXXX.yaml)"
sed -e "s#stomp://127.0.0.1:61611#${STRANGLER_LEGACY_URL}#" \
    -e "s#stomp+ssl://127.0.0.1:61614#${STRANGLER_AMAZONMQ_URL}#" \
    -e "s#ca_file: .brokers/amazonmq/ca.pem#ca_file: ${STRANGLER_AMAZONMQ_CA}#" \
    routes.yaml >"$routes"
.venv/bin/strangler validate --routes "$routes"
.venv/bin/strangler run --routes "$routes" --listen "127.0.0.1:${port}" \
  --admin "127.0.0.1:${admin}" --facts "$facts" \
  2> >(sed 's/^/[proxy] /' >&2) &
proxy=$!
trap 'kill "$proxy" 2>/dev/null || true; wait "$proxy" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null && break
  sleep 0.1
done

.venv/bin/python scripts/demo_producer.py "127.0.0.1:${port}" 4
kill -TERM "$proxy"; wait "$proxy" || true
rm -f "$routes"
trap - EXIT

echo
echo "== where each message went (facts in $facts) =="
.venv/bin/python - "$facts" <<'PY'
import collections, json, sys
routed = collections.Counter()
outcomes = collections.Counter()
for line in open(sys.argv[1]):
    fact = json.loads(line)
    if fact["event"] == "message_routed":
        routed[(fact["destination"], fact["rule"], fact["mode"], "+".join(fact["targets"]))] += 1
    elif fact["event"].startswith("message_"):
        outcomes[(fact["event"], fact.get("broker", ""), fact.get("role", ""))] += 1
print(f"{'destination':28} {'rule':16} {'mode':8} {'sent to':18} count")
for (dest, rule, mode, targets), n in sorted(routed.items()):
    print(f"{dest:28} {rule:16} {mode:8} {targets:18} {n}")
print()
for (event, broker, role), n in sorted(outcomes.items()):
    print(f"{event:24} {broker:10} {role:8} {n}")
PY
echo
echo "== first facts, as written =="
head -n 8 "$facts"
