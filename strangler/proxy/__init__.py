"""The proxy: a sans-I/O session core (``core/``) and the asyncio layer that drives it."""

from .context import ProxyContext, ProxySettings, RoutesHolder
from .driver import SessionDriver
from .reloader import RoutesReloader
from .server import ProxyServer

__all__ = [
    "ProxyContext",
    "ProxyServer",
    "ProxySettings",
    "RoutesHolder",
    "RoutesReloader",
    "SessionDriver",
]
