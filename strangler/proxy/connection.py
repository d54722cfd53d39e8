"""One socket as an asyncio Protocol: bytes handed to the driver as they arrive.

asyncio's streams wake a task through a future for every read; for a producer that
waits for each receipt that wake-up is paid twice per message (once per direction).
Here ``data_received`` calls the driver directly, and the driver pauses and resumes
reading when the session core asks it to (``PauseClient``) or a peer falls behind.

After a read the connection re-arms TCP_QUICKACK (Linux clears it once used): the kernel
acknowledges what the proxy received at once instead of delaying the ACK by 40 ms. A
producer with Nagle on holds its next frame until the previous one is acknowledged;
directly, the broker's RECEIPT carries that ACK within a millisecond, but through the
proxy the RECEIPT first travels to legacy and back, and a delayed ACK held such frames
40-68 ms (``python -m bench.nagle``). Except when ``on_data`` says the read's ACK may
wait (``ack_may_wait``, for that read only): a RECEIPT owed for it will carry the ACK, or
legacy is owed nothing it could hold back. An ACK sent on its own is a packet each way:
re-arming after every read measured bench S2 at 0.37-0.42x against 0.42-0.49x (three
alternating pairs).

Invariants: chunks reach ``on_data`` in arrival order, never two at once (asyncio calls
protocols one at a time); ``on_end`` is called exactly once, with None for an orderly
end of input, else the reason; ``writing_paused`` says the transport holds more than its
high-water mark, and ``on_writable`` is called when it drained below it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any, cast

from ..routes import BrokerEndpoint
from ..upstream import BrokerUnavailable, describe_os_error
from ..upstream.errors import CaFileError
from ..upstream.transport import client_tls_context

DataHandler = Callable[[bytes], None]
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
EndHandler = Callable[[str | None], None]


def _ignore_data(data: bytes) -> None:
    """Until the driver takes a connection over, what arrives waits in the kernel."""


def _ignore_end(reason: str | None) -> None:
    pass


def _nothing() -> None:
    pass


class Connection(asyncio.Protocol):
    def __init__(self, on_open: Callable[[Connection], None] | None = None) -> None:
        self._on_open = on_open
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # connection_made
        self.on_data: DataHandler = _ignore_data
        self.on_end: EndHandler = _ignore_end
        self.on_writable: Callable[[], None] = _nothing
        self.writing_paused = False
        self.ended = False
        self._reading_paused = False
        self._pending: list[bytes] = []  # arrived before the driver took over
        self._pending_end: str | bool | None = False  # False: not ended yet
        self._taken = False
        self._socket: socket.socket | None = None  # to re-arm TCP_QUICKACK on
        # Set by ``on_data`` for the read it handles: no TCP_QUICKACK after it.
        self.ack_may_wait = False

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        if _QUICKACK is not None:  # TLS too: the socket under it delays its ACKs alike
            self._socket = transport.get_extra_info("socket")
        if self._on_open is not None:
            self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self.ack_may_wait = False
        if self._taken:
            self.on_data(data)
        else:
            self._pending.append(data)
        sock = self._socket
        if sock is None or self.ack_may_wait or _QUICKACK is None:
            return
        if self.ended or self.transport.is_closing():
            self._socket = None  # its descriptor may be closed already
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:  # closing meanwhile; the ACK is the kernel's to delay then
            self._socket = None

    def eof_received(self) -> bool:
        self._end(None)
        # Keep a plain TCP connection half-open: receipts may still be owed to the peer.
        # (asyncio's SSL transports close on EOF whatever we answer.)
        return self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(describe_os_error(exc) if exc is not None else None)
        if self.writing_paused:
            self.writing_paused = False
            self.on_writable()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.on_writable()

    # -- the driver's side ------------------------------------------------------

    def take(self, on_data: DataHandler, on_end: EndHandler) -> None:
        """From now on, hand chunks and the end to these (what came before first)."""
        self.on_data, self.on_end = on_data, on_end
        self._taken = True
        pending, self._pending = self._pending, []
        for data in pending:
            on_data(data)
        if self._pending_end is not False:
            ended, self._pending_end = self._pending_end, False
            on_end(ended)  # type: ignore[arg-type]  # str | None once set

    def detach(self) -> None:
        """Forget the driver (whatever arrives from now on is dropped)."""
        self.on_data, self.on_end = _ignore_data, _ignore_end
        self.on_writable = _nothing

    def _end(self, reason: str | None) -> None:
        if self.ended:
            return
        self.ended = True
        if self._taken:
            self.on_end(reason)
        else:
            self._pending_end = reason

    def pause_reading(self) -> None:
        if not self._reading_paused and not self.ended:
            self._reading_paused = True
            with contextlib.suppress(Exception):
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and not self.ended:
            self._reading_paused = False
            with contextlib.suppress(Exception):
                self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        if not self.transport.is_closing():
            self.transport.writelines(data)

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def half_close(self) -> None:
        with contextlib.suppress(Exception):
            if self.transport.can_write_eof():
                self.transport.write_eof()

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)


async def open_connection(
    broker: str, endpoint: BrokerEndpoint, ca_file: str | None, timeout: float
) -> Connection:
    """A :class:`Connection` to a broker endpoint (TLS when the endpoint says so)."""
    loop = asyncio.get_running_loop()
    try:
        tls = client_tls_context(ca_file) if endpoint.tls else None
    except CaFileError as exc:
        raise BrokerUnavailable(broker, f"{endpoint}: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            _, connection = await loop.create_connection(
                Connection,
                endpoint.host,
                endpoint.port,
                ssl=tls,
                server_hostname=endpoint.host if tls else None,
            )
    except (OSError, TimeoutError) as exc:
        raise BrokerUnavailable(broker, f"{endpoint}: {describe_os_error(exc)}") from exc
    no_delay(connection)
    return connection


def no_delay(connection: Connection) -> None:
    """Receipts are small frames a producer waits on: no Nagle delay."""
    sock = connection.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
