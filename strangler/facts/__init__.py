"""Event-first facts: the audit trail of a cutover and the input of replay."""

from .sink import FactSink, FactTemplate, plain_json_string
from .vocabulary import Fact

__all__ = ["Fact", "FactSink", "FactTemplate", "plain_json_string"]
