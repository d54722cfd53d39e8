"""The strangler benchmark: a raw-socket STOMP load generator and its runner.

``python -m bench.run`` (see bench/README.md) measures the proxy as a ratio to a
direct connection to the legacy broker, in the same run.
"""
