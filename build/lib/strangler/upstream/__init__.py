"""Connections from the proxy to brokers: transport, the proxy-owned link, health."""

from .errors import BrokerUnavailable, describe_os_error
from .health import BrokerHealth
from .link import BrokerLink
from .transport import open_stream

__all__ = ["BrokerHealth", "BrokerLink", "BrokerUnavailable", "describe_os_error", "open_stream"]
