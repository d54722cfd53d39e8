# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The frame pump, compiled: the same contract as ``pump.py`` (the reference), faster.

A frame is read here, in C, when it is plain: LF line ends, a known command, every
header line with a ``:`` and within the limits, valid UTF-8, no escape sequence to undo
(or a version/command that has none), and a content-length of plain digits if any.
Everything else (CRLF, escapes, anything malformed or over a limit, a header block not
yet complete) goes to the reference parser's frame reader (``FrameParser._parse_frame``)
on the same buffer, which gives the frame or raises the exact error the pure build
raises. So the fast path only has to be right about plain frames, and the differential
property test (tests/unit/stomp/test_pump_differential.py) checks that it is.

Pass-through (``passing``, see pump.py): a SEND that passes gets no PumpedFrame, only
its trace line's place in a C array (spliced by ``_spliced``) and a place in a run; the
last destination that passed is compared as bytes, so a stream of SENDs to one
destination makes no Python object per frame. Both builds give the same runs (the
differential test).

The buffer: a chunk that starts with no bytes pending is read where it is, and handed
back as ``data`` itself when it holds only complete frames and nothing is spliced; only
an incomplete tail is copied into the buffer (a ``bytearray``, which shrinks again when
a large frame has passed).
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdio cimport snprintf
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy

from strangler.stomp import pump as _pure
from strangler.stomp.errors import MalformedFrame, ProtocolError
from strangler.stomp.frame import COMMANDS, UNESCAPED_COMMANDS
from strangler.stomp.limits import DEFAULT_LIMITS
from strangler.stomp.parser import FrameParser

cdef enum:
    LF = 0x0A
    CR = 0x0D
    COLON = 0x3A
    BACKSLASH = 0x5C
    # _fast's answers besides a frame's end
    INCOMPLETE = 0
    DECLINE = -1

# Bytes a header scan stops at: LF, ':', '\\', CR and every non-ASCII byte.
cdef unsigned char STOP[256]
cdef int _b
for _b in range(256):
    STOP[_b] = 1 if (_b in (LF, COLON, BACKSLASH, CR) or _b >= 0x80) else 0

# Known commands: their bytes (kept alive by _COMMAND_BYTES), names and whether they
# are never escaped (CONNECT, STOMP, CONNECTED).
cdef list _COMMAND_BYTES = sorted(c.encode("ascii") for c in COMMANDS)
cdef list _COMMAND_NAMES = [c.decode("ascii") for c in _COMMAND_BYTES]
cdef int _NCOMMANDS = len(_COMMAND_BYTES)
cdef const char* _CMD_PTR[32]
cdef Py_ssize_t _CMD_LEN[32]
cdef bint _CMD_VERBATIM[32]
cdef int _SEND = _COMMAND_NAMES.index("SEND")
cdef int _i
for _i in range(_NCOMMANDS):
    _CMD_PTR[_i] = PyBytes_AS_STRING(_COMMAND_BYTES[_i])
    _CMD_LEN[_i] = PyBytes_GET_SIZE(_COMMAND_BYTES[_i])
    _CMD_VERBATIM[_i] = _COMMAND_NAMES[_i] in UNESCAPED_COMMANDS


cdef dict _FIELD_BYTES = {}  # fields -> their names as bytes


cdef inline int _hex_digits(unsigned long long n):
    """How many digits ``%08llx`` writes for ``n``."""
    cdef int digits = 8
    while digits < 16 and (n >> (4 * digits)) != 0:
        digits += 1
    return digits


cdef inline int _command(const unsigned char* p, Py_ssize_t n):
    cdef int i
    for i in range(_NCOMMANDS):
        if _CMD_LEN[i] == n and memcmp(_CMD_PTR[i], p, n) == 0:
            return i
    return -1


cdef bint _utf8(const unsigned char* p, Py_ssize_t n):
    try:
        PyUnicode_DecodeUTF8(<const char*>p, n, NULL)
    except UnicodeDecodeError:
        return False
    return True


cdef class PumpedFrame:
    """One complete frame of a Pumped chunk (see ``pump.PumpedFrame``)."""

    cdef readonly str command
    cdef readonly Py_ssize_t start, end, eol_end, body_start, body_end, splice_at
    cdef readonly tuple values
    cdef readonly object trace
    cdef object _data
    cdef object _parsed  # the Frame as received: from the slow path, or parsed on demand
    cdef object _splice
    cdef object _limits
    cdef object _version
    cdef Py_ssize_t _line_len

    def frame(self):
        """The whole Frame as forwarded (spliced header first); raw is data[start:end]."""
        raw = self._data[self.start:self.end]
        if self._parsed is None:
            received = raw
            if self.splice_at >= 0:
                at = self.splice_at - self.start
                received = raw[:at] + raw[at + self._line_len:]
            self._parsed = _pure.reparse(received, self._limits, self._version)
        return _pure.spliced(self._parsed, raw, self._splice, self.trace)

    def __repr__(self):
        return (
            f"PumpedFrame({self.command} {self.start}:{self.end} eol_end={self.eol_end} "
            f"body={self.body_start}:{self.body_end} values={self.values!r} "
            f"trace={self.trace!r} splice_at={self.splice_at})"
        )


cdef class Pumped:
    """What one feed gives: bytes to forward, a record per frame, an error or None."""

    cdef readonly bytes data
    cdef readonly list frames
    cdef readonly object error
    cdef readonly list passed

    def __repr__(self):
        return (
            f"Pumped({len(self.data)} bytes, {len(self.frames)} frames, "
            f"{sum(count for _, _, count in self.passed)} passed, error={self.error!r})"
        )


cdef inline Pumped _pumped(bytes data, list frames, object error, list passed):
    cdef Pumped out = Pumped.__new__(Pumped)
    out.data = data
    out.frames = frames
    out.error = error
    out.passed = passed
    return out


cdef class FramePump:
    """Bytes in, bytes to forward plus a PumpedFrame per frame out (compiled build)."""

    cdef readonly object limits
    cdef object _parser  # FrameParser for the slow path, made at its first frame (or None)
    cdef str _version
    cdef bint _escapes  # version != "1.0"
    cdef bytearray _buf
    cdef tuple _fields
    cdef tuple _field_bytes
    cdef Py_ssize_t _nfields
    cdef Py_ssize_t* _vstart
    cdef Py_ssize_t* _vend
    cdef object _splice
    cdef bytes _head  # b"<splice>:"
    cdef char* _trace  # the trace prefix, then room for 16 hex digits
    cdef Py_ssize_t _prefix_len
    cdef readonly str trace_prefix
    cdef unsigned long long _count
    cdef Py_ssize_t _max_frame, _max_headers, _max_line
    cdef Py_ssize_t _need, _scanned, _shift
    cdef object _error
    cdef readonly unsigned long long slow_frames  # frames the fast path left to the reference
    cdef public object passing  # set by the session before a feed: see pump.py
    # Pass-through within one feed: the dict in use (or None), where each passed SEND's
    # trace line goes (offsets into the feed's input), the first one's counter, the runs
    # so far and the open run (its value, borrowed from the dict, which outlives the feed).
    cdef object _passing
    cdef Py_ssize_t* _pass_at
    cdef Py_ssize_t _npass, _pass_cap
    cdef unsigned long long _pass_first
    cdef list _passed
    cdef PyObject* _run
    cdef Py_ssize_t _run_count
    cdef unsigned long long _run_first
    # The last destination that passed, as bytes of the input, and its value.
    cdef const unsigned char* _hit
    cdef Py_ssize_t _hit_len
    cdef PyObject* _hit_value

    def __cinit__(self):
        self._vstart = NULL
        self._vend = NULL
        self._trace = NULL
        self._pass_at = NULL
        self._pass_cap = 0

    def __init__(
        self,
        limits=DEFAULT_LIMITS,
        *,
        version="1.0",
        fields=(),
        splice=None,
        trace_prefix="",
    ):
        if splice is not None:
            _pure.check_token("splice", splice, empty=False)
        _pure.check_token("trace_prefix", trace_prefix, empty=True)
        self.limits = limits
        self._parser = None  # most sessions never need it: ~200 bytes each saved
        _pure.check_version(version)
        self._version = version
        self._escapes = version != "1.0"
        self._buf = bytearray()
        self._fields = tuple(fields)
        # Shared by every pump with these fields (a session has two pumps; 1,000 of them).
        self._field_bytes = _FIELD_BYTES.get(self._fields)
        if self._field_bytes is None:
            if len(_FIELD_BYTES) > 64:
                _FIELD_BYTES.clear()
            self._field_bytes = _FIELD_BYTES[self._fields] = tuple(
                f.encode("utf-8") for f in self._fields
            )
        self._nfields = len(self._fields)
        free(self._vstart)
        free(self._vend)
        self._vstart = <Py_ssize_t*>malloc((self._nfields + 1) * sizeof(Py_ssize_t))
        self._vend = <Py_ssize_t*>malloc((self._nfields + 1) * sizeof(Py_ssize_t))
        self._splice = splice
        self._head = b"" if splice is None else f"{splice}:".encode("ascii")
        self.trace_prefix = trace_prefix
        prefix = trace_prefix.encode("ascii")
        self._prefix_len = len(prefix)
        free(self._trace)
        self._trace = <char*>malloc(self._prefix_len + 17)
        if self._vstart == NULL or self._vend == NULL or self._trace == NULL:
            raise MemoryError()
        memcpy(self._trace, PyBytes_AS_STRING(prefix), self._prefix_len)
        self._count = 0
        self._max_frame = limits.max_frame_bytes
        self._max_headers = limits.max_headers
        self._max_line = limits.max_header_line
        self._need = 0
        self._scanned = 0
        self._error = None
        self.slow_frames = 0
        self.passing = None

    def __dealloc__(self):
        free(self._vstart)
        free(self._vend)
        free(self._trace)
        free(self._pass_at)

    @property
    def version(self):
        return self._version

    @version.setter
    def version(self, version):
        _pure.check_version(version)
        if self._parser is not None:
            self._parser.version = version
        self._version = version
        self._escapes = version != "1.0"

    @property
    def fields(self):
        return self._fields

    @property
    def buffered(self):
        """Bytes held for an incomplete frame (or a CR that may start a CRLF)."""
        return PyByteArray_GET_SIZE(self._buf)

    @property
    def sends(self):
        """SENDs that got a trace id so far (the last id's counter)."""
        return self._count

    def feed(self, data):
        """Add ``data``; return the complete frames and EOLs, their records, any error."""
        cdef bytes chunk
        cdef object src
        cdef const unsigned char* p
        cdef Py_ssize_t n, pos = 0, end
        cdef unsigned char c
        cdef list records = []
        cdef object error = None
        cdef bytes out
        cdef PumpedFrame record
        cdef Py_ssize_t framed
        if self._error is not None:
            return _pumped(b"", [], self._error, [])
        chunk = data if type(data) is bytes else bytes(data)
        if PyByteArray_GET_SIZE(self._buf) == 0:
            src = chunk
            p = <const unsigned char*>PyBytes_AS_STRING(chunk)
            n = PyBytes_GET_SIZE(chunk)
        else:
            self._buf += chunk
            src = self._buf
            p = <const unsigned char*>PyByteArray_AS_STRING(self._buf)
            n = PyByteArray_GET_SIZE(self._buf)
        self._shift = 0
        self._passing = None
        if self._splice is not None and self._nfields and self.passing is not None:
            self._passing = <dict?>self.passing
        self._npass = 0
        self._passed = []
        self._run = NULL
        self._run_count = 0
        self._hit = NULL
        try:
            while pos < n:
                c = p[pos]
                if c == LF:
                    pos += 1
                    continue
                if c == CR:
                    if pos + 1 >= n:
                        break
                    if p[pos + 1] != LF:
                        raise MalformedFrame("CR not followed by LF")
                    pos += 2
                    continue
                if self._need and n - pos < self._need:
                    break
                framed = len(records)
                end = self._fast(p, n, pos, records)
                if end == DECLINE:
                    end = self._slow(src, p, pos, records)
                if end == INCOMPLETE:
                    break
                self._need = 0
                self._scanned = 0
                if len(records) == framed:  # it passed through
                    pos = end
                    continue
                record = records[len(records) - 1]
                if end < n and p[end] == LF:
                    record.eol_end = record.end + 1
                elif end + 1 < n and p[end] == CR and p[end + 1] == LF:
                    record.eol_end = record.end + 2
                else:
                    record.eol_end = record.end
                pos = end
        except ProtocolError as exc:
            error = exc
            self._error = exc
        if self._shift:
            out = self._spliced(p, pos, records)
        elif src is chunk and pos == n:
            out = chunk
        else:
            out = PyBytes_FromStringAndSize(<const char*>p, pos)
        for record in records:
            record._data = out
        if self._run_count:
            self._passed.append((<object>self._run, self._run_first, self._run_count))
        self._run = NULL
        self._hit_value = NULL
        self._passing = None
        if src is chunk:
            if pos < n:
                self._buf += memoryview(chunk)[pos:]
        elif pos:
            del self._buf[:pos]
        return _pumped(out, records, error, self._passed)

    cdef bytes _spliced(self, const unsigned char* p, Py_ssize_t pos, list records):
        """p[:pos] with each passed SEND's and each record's trace line inserted."""
        cdef bytes out = PyBytes_FromStringAndSize(NULL, pos + self._shift)
        cdef char* q = PyBytes_AS_STRING(out)
        cdef Py_ssize_t w = 0, copied = 0
        cdef bytes trace
        cdef PumpedFrame record
        cdef Py_ssize_t i, digits
        for i in range(self._npass):  # passes come first, at input offsets
            digits = snprintf(self._trace + self._prefix_len, 17, "%08llx", self._pass_first + i)
            w = self._line(q, w, p, &copied, self._pass_at[i], self._trace, self._prefix_len + digits)
        for record in records:
            if record.splice_at < 0:
                continue
            trace = record.trace.encode("ascii")
            w = self._line(
                q, w, p, &copied, record.splice_at - (w - copied),  # output offset -> p's
                PyBytes_AS_STRING(trace), PyBytes_GET_SIZE(trace)
            )
        memcpy(q + w, p + copied, pos - copied)
        return out

    cdef inline Py_ssize_t _line(
        self, char* q, Py_ssize_t w, const unsigned char* p, Py_ssize_t* copied,
        Py_ssize_t at, const char* trace, Py_ssize_t length
    ):
        """Copy p[copied:at] to q at w, then ``<splice>:<trace>`` LF; the new w."""
        cdef Py_ssize_t head = PyBytes_GET_SIZE(self._head)
        memcpy(q + w, p + copied[0], at - copied[0])
        w += at - copied[0]
        copied[0] = at
        memcpy(q + w, PyBytes_AS_STRING(self._head), head)
        w += head
        memcpy(q + w, trace, length)
        w += length
        q[w] = LF
        return w + 1

    cdef bint _pass(self, object value, Py_ssize_t line_at) except -1:
        """Pass the SEND whose first header line starts at ``line_at`` (input offsets)
        when its first field's ``value`` is a key of ``passing`` (see pump.py)."""
        cdef PyObject* found
        if value is None:
            return False
        found = PyDict_GetItem(self._passing, value)
        if found == NULL or found == <PyObject*>None:
            return False
        self._passed_one(found, line_at)
        return True

    cdef int _passed_one(self, PyObject* found, Py_ssize_t line_at) except -1:
        """Count a passed SEND: its trace line's place and length, its run."""
        cdef Py_ssize_t* grown
        if self._npass == self._pass_cap:
            grown = <Py_ssize_t*>realloc(self._pass_at, (self._pass_cap * 2 + 64) * sizeof(Py_ssize_t))
            if grown == NULL:
                raise MemoryError()
            self._pass_at = grown
            self._pass_cap = self._pass_cap * 2 + 64
        self._count += 1
        if self._npass == 0:
            self._pass_first = self._count
        self._pass_at[self._npass] = line_at
        self._npass += 1
        # The line's length only: _spliced writes it.
        self._shift += PyBytes_GET_SIZE(self._head) + self._prefix_len + _hex_digits(self._count) + 1
        if found != self._run:  # never NULL: a run starts
            if self._run_count:
                self._passed.append((<object>self._run, self._run_first, self._run_count))
            self._run = found
            self._run_first = self._count
            self._run_count = 0
        self._run_count += 1
        return 0

    cdef inline object _next_trace(self):
        cdef int digits
        self._count += 1
        digits = snprintf(self._trace + self._prefix_len, 17, "%08llx", self._count)
        return PyUnicode_DecodeASCII(self._trace, self._prefix_len + digits, NULL)

    cdef Py_ssize_t _fast(
        self, const unsigned char* p, Py_ssize_t n, Py_ssize_t s, list records
    ) except -2:
        """The plain frame at p[s:]: its end (after the NUL), INCOMPLETE (state kept for
        the next feed) or DECLINE (the slow path decides)."""
        cdef const unsigned char* q
        cdef Py_ssize_t i, k, line, colon, nl, body_start, end, length
        cdef Py_ssize_t cl_start = -1, cl_end = -1, lines = 1
        cdef Py_ssize_t nfields = self._nfields
        cdef Py_ssize_t* vstart = self._vstart
        cdef Py_ssize_t* vend = self._vend
        cdef bint high = False, backslash = False, verbatim
        cdef int command
        cdef unsigned char c
        cdef const char* name
        cdef PumpedFrame record
        cdef tuple values
        cdef object value
        # The command line.
        q = <const unsigned char*>memchr(p + s, LF, n - s)
        if q == NULL:
            return DECLINE  # the slow path knows whether a partial line is already too long
        nl = q - p
        if nl - s > self._max_line:
            return DECLINE
        command = _command(p + s, nl - s)
        if command < 0:
            return DECLINE
        verbatim = _CMD_VERBATIM[command] or not self._escapes
        for k in range(nfields):
            vstart[k] = -1
        # Header lines up to the blank line.
        line = nl + 1
        while True:
            if line >= n:
                return DECLINE
            if p[line] == LF:
                body_start = line + 1
                break
            colon = -1
            i = line
            while True:
                while i < n and not STOP[p[i]]:
                    i += 1
                if i >= n:
                    return DECLINE
                c = p[i]
                if c == LF:
                    break
                if c == COLON:
                    if colon < 0:
                        colon = i
                elif c == BACKSLASH:
                    backslash = True
                elif c == CR:
                    return DECLINE
                else:
                    high = True
                i += 1
            if i - line > self._max_line:
                return DECLINE
            lines += 1
            if lines > self._max_headers + 1 or colon < 0:
                return DECLINE
            if cl_start < 0 and colon - line == 14 and memcmp(p + line, b"content-length", 14) == 0:
                cl_start = colon + 1
                cl_end = i
            for k in range(nfields):
                if vstart[k] < 0:
                    name = PyBytes_AS_STRING(self._field_bytes[k])
                    if PyBytes_GET_SIZE(self._field_bytes[k]) == colon - line and memcmp(
                        p + line, name, colon - line
                    ) == 0:
                        vstart[k] = colon + 1
                        vend[k] = i
            line = i + 1
        if backslash and not verbatim:
            return DECLINE
        if high and not _utf8(p + nl + 1, body_start - nl - 1):
            return DECLINE
        if body_start - s > self._max_frame:
            return DECLINE
        # The body: by content-length, else up to the first NUL.
        if cl_start >= 0:
            if cl_end == cl_start or cl_end - cl_start > 18:
                return DECLINE
            length = 0
            for i in range(cl_start, cl_end):
                c = p[i]
                if c < 0x30 or c > 0x39:
                    return DECLINE
                length = length * 10 + (c - 0x30)
            if body_start - s + length + 1 > self._max_frame:
                return DECLINE
            end = body_start + length
            if n <= end:
                self._need = end + 1 - s
                return INCOMPLETE
            if p[end] != 0:
                return DECLINE
        else:
            i = body_start if body_start > s + self._scanned else s + self._scanned
            q = <const unsigned char*>memchr(p + i, 0, n - i)
            if q == NULL:
                if n - s > self._max_frame:
                    return DECLINE
                self._scanned = n - s
                return INCOMPLETE
            end = q - p
        if end + 1 - s > self._max_frame:
            return DECLINE
        # A pass-through SEND: its first field (the destination) only, and a known one.
        if command == _SEND and self._passing is not None and not records and vstart[0] >= 0:
            for k in range(1, nfields):
                if vstart[k] >= 0:
                    break
            else:
                length = vend[0] - vstart[0]
                if (
                    self._hit != NULL
                    and self._hit_len == length
                    and memcmp(self._hit, p + vstart[0], length) == 0
                ):
                    self._passed_one(self._hit_value, nl + 1)
                    return end + 1
                if high:
                    value = PyUnicode_DecodeUTF8(<const char*>p + vstart[0], length, NULL)
                else:
                    value = PyUnicode_DecodeASCII(<const char*>p + vstart[0], length, NULL)
                if self._pass(value, nl + 1):
                    self._hit = p + vstart[0]
                    self._hit_len = length
                    self._hit_value = self._run
                    return end + 1
        # The record.
        record = PumpedFrame.__new__(PumpedFrame)
        record.command = _COMMAND_NAMES[command]
        record.start = s + self._shift
        if command == _SEND and self._splice is not None:
            record.trace = self._next_trace()
            record._line_len = PyBytes_GET_SIZE(self._head) + len(record.trace) + 1
            record.splice_at = nl + 1 + self._shift
            self._shift += record._line_len
        else:
            record.trace = None
            record.splice_at = -1
        record.body_start = body_start + self._shift
        record.body_end = end + self._shift
        record.end = end + 1 + self._shift
        values = PyTuple_New(nfields)
        for k in range(nfields):
            if vstart[k] < 0:
                value = None
            elif high:
                value = PyUnicode_DecodeUTF8(<const char*>p + vstart[k], vend[k] - vstart[k], NULL)
            else:
                value = PyUnicode_DecodeASCII(<const char*>p + vstart[k], vend[k] - vstart[k], NULL)
            Py_INCREF(value)
            PyTuple_SET_ITEM(values, k, value)
        record.values = values
        record._parsed = None
        record._splice = self._splice
        record._limits = self.limits
        record._version = self._version
        records.append(record)
        return end + 1

    cdef Py_ssize_t _slow(
        self, object src, const unsigned char* p, Py_ssize_t s, list records
    ) except -2:
        """The reference parser's frame reader on the same bytes: a frame, INCOMPLETE
        or its ProtocolError."""
        cdef PumpedFrame record
        cdef Py_ssize_t end, nl
        parser = self._parser
        if parser is None:
            parser = self._parser = FrameParser(self.limits, self._version)
        parser._need = 0
        parser._scanned = self._scanned
        frame, end = parser._parse_frame(src, s)
        if frame is None:
            self._need = parser._need
            self._scanned = parser._scanned
            return INCOMPLETE
        parser._need = 0
        parser._scanned = 0
        self.slow_frames += 1
        values = tuple(map(frame.get, self._fields))
        if (
            self._passing is not None
            and frame.command == "SEND"
            and not records
            and values.count(None) == self._nfields - 1
        ):
            nl = <const unsigned char*>memchr(p + s, LF, end - s) - p
            if self._pass(values[0], nl + 1):
                return end
        record = PumpedFrame.__new__(PumpedFrame)
        record.command = frame.command
        record.start = s + self._shift
        if self._splice is not None and frame.command == "SEND":
            nl = <const unsigned char*>memchr(p + s, LF, end - s) - p
            record.trace = self._next_trace()
            record._line_len = PyBytes_GET_SIZE(self._head) + len(record.trace) + 1
            record.splice_at = nl + 1 + self._shift
            self._shift += record._line_len
        else:
            record.trace = None
            record.splice_at = -1
        record.end = end + self._shift
        record.body_end = record.end - 1
        record.body_start = record.body_end - len(frame.body)
        record.values = values
        record._parsed = frame
        record._splice = self._splice
        record._limits = self.limits
        record._version = self._version
        records.append(record)
        return end
