"""Event-first facts: the audit trail of a cutover and the input of replay."""

from .sink import FactSink
from .vocabulary import Fact

__all__ = ["Fact", "FactSink"]
