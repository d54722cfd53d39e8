"""Operating the proxy: Prometheus metrics, the admin HTTP port, the status view."""

from .metrics import ProxyMetrics
from .server import AdminServer, routes_document
from .status import StatusWindow

__all__ = ["AdminServer", "ProxyMetrics", "StatusWindow", "routes_document"]
