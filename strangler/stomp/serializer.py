"""Frame to bytes, and the small byte-level rewrites the proxy needs.

``encode`` escapes header values per the negotiated version (never for
CONNECT/STOMP/CONNECTED) and adds ``content-length`` when the body holds a NUL,
since such a body cannot be framed otherwise. ``insert_header`` splices one
header into a frame's original bytes right after the command line, so it
becomes the first (winning) occurrence without re-encoding the frame.
"""

from __future__ import annotations

from .escaping import escape
from .frame import UNESCAPED_COMMANDS, Frame, Headers


def encode(frame: Frame, version: str) -> bytes:
    return encode_parts(frame.command, frame.headers, frame.body, version)


def encode_parts(command: str, headers: Headers, body: bytes, version: str) -> bytes:
    escaped = command not in UNESCAPED_COMMANDS and version != "1.0"
    parts = [command]
    has_length = False
    for name, value in headers:
        if name == "content-length":
            has_length = True
        if escaped:
            parts.append(f"{escape(name, version)}:{escape(value, version)}")
        else:
            parts.append(f"{name}:{value}")
    if not has_length and b"\0" in body:
        parts.append(f"content-length:{len(body)}")
    # One join: ``a + body + b"\0"`` would copy a large body twice.
    return b"".join((("\n".join(parts) + "\n\n").encode("utf-8"), body, b"\0"))


def insert_header(raw: bytes, name: str, value: str, version: str) -> bytes:
    """``raw`` with ``name:value`` as its first header (it wins over any later one)."""
    nl = raw.index(b"\n") + 1
    line = f"{escape(name, version)}:{escape(value, version)}\n".encode()
    view = memoryview(raw)  # slices without copies: the join below is the one copy
    return b"".join((view[:nl], line, view[nl:]))


def header_end(raw: bytes) -> int:
    """Where ``raw``'s header lines end: just after the last one's EOL, before the blank
    line (LF or CRLF, as the frame has them); ``len(raw)`` if there is no blank line."""
    lf = raw.find(b"\n\n")
    crlf = raw.find(b"\n\r\n")
    ends = [i + 1 for i in (lf, crlf) if i >= 0]
    return min(ends) if ends else len(raw)


def remove_header(raw: bytes, name: str) -> bytes:
    """``raw`` without any ``name`` header line (the body is never searched)."""
    end = header_end(raw)
    prefix = name.encode() + b":"
    lines = raw[:end].splitlines(keepends=True)
    kept = [lines[0]] + [line for line in lines[1:] if not line.startswith(prefix)]
    if len(kept) == len(lines):
        return raw
    view = memoryview(raw)
    return b"".join((*kept, view[end:]))


def replace_header(raw: bytes, name: str, value: str, version: str) -> bytes:
    """``raw`` with ``name:value`` as its one ``name`` header (first, after the command).

    For frames toward a client: a 1.0/1.1 client library may take the *last* of
    repeated headers, so the old lines go rather than being shadowed."""
    return insert_header(remove_header(raw, name), name, value, version)


def error_frame(message: str, detail: str = "", receipt_id: str | None = None) -> bytes:
    """An ERROR frame for the peer (spec: "ERROR"); ``message`` names the problem."""
    headers: list[tuple[str, str]] = [("message", _plain(message)[:512])]
    if receipt_id is not None:
        headers.append(("receipt-id", _plain(receipt_id)))
    body = detail.encode("utf-8")
    headers.append(("content-type", "text/plain"))
    headers.append(("content-length", str(len(body))))
    # Values are kept free of LF, CR and backslash above, so the 1.0 form is
    # valid for every version.
    return encode_parts("ERROR", tuple(headers), body, "1.0")


def _plain(value: str) -> str:
    """``value`` without the bytes whose meaning depends on the version (LF, CR, ``\\``)."""
    return value.replace("\\", "/").replace("\r", " ").replace("\n", " ")
