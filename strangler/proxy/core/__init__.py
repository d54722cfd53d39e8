"""The session as a sans-I/O state machine: events in, commands out (no sockets here).

``session.SessionCore`` is the entry point; ``commands`` what it asks of the driver.
"""
