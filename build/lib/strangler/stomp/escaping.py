"""Header value escaping per negotiated STOMP version (spec: "Value Encoding").

1.0 has no escaping. 1.1 escapes ``\\``, LF and ``:``; 1.2 adds CR. Frames in
:data:`~strangler.stomp.frame.UNESCAPED_COMMANDS` are never escaped, in any version.
An undefined escape sequence is a fatal protocol error (1.2) and is treated so
for 1.1 too.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import MalformedFrame

_ESCAPE_11: Final = str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c"})
_ESCAPE_12: Final = str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"})
_UNESCAPE_11: Final = {"\\\\": "\\", "\\n": "\n", "\\c": ":"}
_UNESCAPE_12: Final = {**_UNESCAPE_11, "\\r": "\r"}
_SEQUENCE: Final = re.compile(r"\\.?", re.DOTALL)


def escape(value: str, version: str) -> str:
    # Most values (ids, destinations, trace ids) need nothing; str.translate costs
    # about a microsecond even then, a few ``in`` tests a tenth of that.
    if "\\" not in value and "\n" not in value and ":" not in value and "\r" not in value:
        return value
    if version == "1.2":
        return value.translate(_ESCAPE_12)
    if version == "1.1":
        return value.translate(_ESCAPE_11)
    return value


def unescape(value: str, version: str) -> str:
    if version == "1.0" or "\\" not in value:
        return value
    table = _UNESCAPE_12 if version == "1.2" else _UNESCAPE_11

    def replace(match: re.Match[str]) -> str:
        seq = match.group(0)
        try:
            return table[seq]
        except KeyError:
            raise MalformedFrame(f"undefined escape sequence {seq!r} in header") from None

    return _SEQUENCE.sub(replace, value)
