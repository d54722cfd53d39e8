"""The asyncio layer: a thin shell around the codec, the router and the facts."""

from .context import ProxyContext, ProxySettings, RoutesHolder
from .reloader import RoutesReloader
from .server import ProxyServer
from .session import ClientSession

__all__ = [
    "ClientSession",
    "ProxyContext",
    "ProxyServer",
    "ProxySettings",
    "RoutesHolder",
    "RoutesReloader",
]
