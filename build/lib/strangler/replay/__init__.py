"""Capture, replay and plan: see what a routes change would do before it happens.

- ``capture``: a ``TrafficTap`` writing mitmproxy flow files (one TCP flow per producer
  connection) from ``strangler run --capture FILE``;
- ``sources``: the SENDs of a capture (ours or a plain ``mitmdump``'s) or of a facts file;
- ``report``: each SEND decided by ``strangler.routes.decide`` exactly as the live proxy
  does, counted per route and destination, and diffed against other routes;
- ``publish``: re-sending captured SENDs to the brokers the routes choose, resumably;
- ``plan``: ``strangler plan old.yaml new.yaml``;
- ``commands``: the command-line wiring (argparse only; imports the rest lazily).

This ``__init__`` imports nothing on purpose: ``strangler validate`` and ``run`` without
``--capture`` never pay for importing mitmproxy.
"""
