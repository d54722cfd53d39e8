"""The cutover ledger: fact streams read back as one record of where every message went.

``streams`` reads fact files and standard input (rotated, gzip, many replicas);
``journeys`` judges one message against the promise; ``book`` follows every message of
the input and tallies the outcomes; ``report`` renders them. ``strangler audit`` and
``strangler verify`` (the in-doubt and lost copies) both read facts through here.
"""

from .book import Ledger
from .journeys import Journey
from .streams import EachFact, FactConsumer, FactReader, InputError, InputStats
from .tallies import Book, Violation

__all__ = [
    "Book",
    "EachFact",
    "FactConsumer",
    "FactReader",
    "InputError",
    "InputStats",
    "Journey",
    "Ledger",
    "Violation",
]
