"""A message sent again as a SEND of our own, in STOMP 1.2: replay's captured SENDs,
drain's delivered MESSAGEs."""

from __future__ import annotations

from .frame import Headers
from .serializer import encode_parts


def encode_send(
    headers: Headers,
    body: bytes,
    destination: str,
    receipt: str,
    trace: tuple[str, str],
    drop: frozenset[str],
) -> bytes:
    """A SEND of ``headers`` (in order, but ``drop``) and ``body`` with our own receipt.

    ``trace`` is (header, id): the id is added when the headers lack that header.
    ``drop`` must hold the headers written here: destination, receipt, content-length.
    """
    trace_header, trace_id = trace
    out: list[tuple[str, str]] = [("destination", destination), ("receipt", receipt)]
    if not any(name == trace_header for name, _ in headers):
        out.append((trace_header, trace_id))
    had_length = False
    for name, value in headers:
        if name == "content-length":
            had_length = True
        if name not in drop:
            out.append((name, value))
    # ActiveMQ makes a BytesMessage of a SEND with content-length, a TextMessage without:
    # keep whichever the producer sent (encode_parts adds it anyway for a body with NUL).
    if had_length:
        out.append(("content-length", str(len(body))))
    return encode_parts("SEND", tuple(out), body, "1.2")
