"""Finishing a cutover: ``strangler drain`` and ``strangler verify``.

- ``brokers``: the destination pair a route gives, legacy's login, the connection type;
- ``backlog``: reading a queue without consuming it (ActiveMQ's STOMP browser), message ids;
- ``journal``: the ids a stopped drain may have left on both brokers, for the next run;
- ``mover``: the move loop (legacy acknowledges only what Amazon MQ confirmed);
- ``verify``: comparing a mirrored queue on both brokers;
- ``commands``: the command-line wiring.

Connections are the blocking STOMP client replay uses too (``strangler.upstream.client``).
"""
