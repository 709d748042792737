"""distr's mpi4py-compatible layer: `from mpi4py import MPI` in a program run by distr-master.

The subset (docs/mpi4py.md lists it, with what differs from MPI):

- COMM_WORLD, COMM_SELF, COMM_NULL; Comm.Get_rank/Get_size, .rank/.size, Dup, Clone, Split, Free,
  Abort, Get_name/Set_name; Init, Finalize, Is_initialized, Is_finalized, Wtime, Wtick,
  Get_processor_name.
- Pickled objects: send, recv, isend, irecv, sendrecv, probe, iprobe, bcast, scatter, gather,
  allgather, alltoall, reduce, allreduce, scan, exscan, barrier; Request wait/test/cancel and
  Waitall/Waitany/Testall/Testany (and the lowercase forms); ops SUM PROD MAX MIN LAND LOR LXOR
  BAND BOR BXOR MAXLOC MINLOC and Op.Create.
- Buffers (numpy arrays, array.array, bytearray, any C-contiguous buffer): Send, Recv, Isend,
  Irecv, Sendrecv, Bcast, Scatter, Gather, Allgather, Alltoall, Reduce, Allreduce, Scan, Exscan,
  Barrier, with the specs `buf`, `[buf, datatype]`, `[buf, count, datatype]`,
  `[buf, (count, displ), datatype]`, `[buf, count, displ, datatype]` and IN_PLACE.
- Status (source, tag, error, count, Get_source, Get_tag, Get_error, Get_count, Get_elements),
  ANY_SOURCE, ANY_TAG, PROC_NULL, UNDEFINED, SUCCESS, TAG_UB (Comm.Get_attr(TAG_UB) is 2**31-1).

Everything else mpi4py has raises NotImplementedError naming the call (it is also an
AttributeError, so `hasattr(MPI, "Win")` is False rather than an exception).

Communicators and tags: each communicator has a context id c (COMM_WORLD 0, COMM_SELF 1) that sits
in the high bits of every tag it sends: user tag t travels as c * 2**32 + t, and the k-th
collective call on it uses -(c * 2**32) - 1 - 4 * (k mod 2**29) and that minus 1, the
collective tags of docs/messages.md §5 moved into the communicator's window. So COMM_WORLD's
messages are the distr module's and Swift ranks' messages: a plain tag, plain collective tags.
"""

import array
import os
import sys
import time

from distr import _codec, _collectives, _transport

# ---------------------------------------------------------------------------------------------
# constants

ANY_SOURCE = -1
ANY_TAG = -1
PROC_NULL = -2
ROOT = -4
UNDEFINED = -32766
SUCCESS = 0
#: The attribute key of the tag upper bound (as in mpi4py: a key for Comm.Get_attr, not the bound).
TAG_UB = 0
_TAG_MAX = 2**31 - 1
_CONTEXT_SHIFT = 32
_DOCS = "docs/mpi4py.md lists the supported calls; run programs that need more under mpirun with the real mpi4py"


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return self._name

    def __reduce__(self):
        return self._name


IN_PLACE = _Sentinel("IN_PLACE")
BOTTOM = _Sentinel("BOTTOM")

#: MPI.Exception is distr's error: a dead peer, an aborted job, a bad rank or tag all raise it.
Exception = _transport.DistrError  # noqa: A001 -- mpi4py's name; builtins.Exception is not used below


class _Unsupported(NotImplementedError, AttributeError):
    """A part of mpi4py that distr's layer does not provide."""


def _unsupported(name):
    return _Unsupported("%s is not supported by distr's mpi4py layer; %s" % (name, _DOCS))


# ---------------------------------------------------------------------------------------------
# environment

_state = {"finalized": False, "transport": None}


def _t():
    """This process's transport (joined on first use; raises when not started by distr-master)."""
    transport = _state["transport"]
    if transport is None:
        transport = _state["transport"] = _transport.world()
    return transport


def Init():
    """Does nothing: distr joins the job on first use."""


def Finalize():
    """Marks the layer finalized; later communication raises."""
    if _state["transport"] is not None:
        _state["transport"].flush()
    _state["finalized"] = True


def Is_initialized():
    return True


def Is_finalized():
    return _state["finalized"]


def Wtime():
    """Seconds on a monotonic clock (differences are what count)."""
    return time.perf_counter()


def Wtick():
    return time.get_clock_info("perf_counter").resolution


def Get_processor_name():
    import _socket  # not `socket`, whose import (selectors, enum) costs every rank milliseconds at start

    return _socket.gethostname()


# ---------------------------------------------------------------------------------------------
# datatypes


class _Layer(type):
    """The classes of this layer: a missing attribute of mpi4py's API raises NotImplementedError,
    on the class (MPI.Request.Waitsome) and on its objects (comm.Spawn)."""

    def __getattr__(cls, name):
        return _missing(cls, cls._mpi_kind, name)


class _Object(metaclass=_Layer):
    __slots__ = ()
    _mpi_kind = "Object"

    def __getattr__(self, name):
        return _missing(self, type(self)._mpi_kind, name)


class Pickle(_Object):
    """How the lowercase calls turn objects into bytes, as mpi4py's MPI.Pickle: the standard pickle
    (imported at its first use) by default; other functions swap it, as in mpi4py:
    MPI.pickle.__init__(dill.dumps, dill.loads). Given functions without a protocol, dumps is
    called with the object alone."""

    _mpi_kind = "Pickle"
    __slots__ = ("_dumps", "_loads", "_protocol")

    def __init__(self, dumps=None, loads=None, protocol=None):
        self._dumps, self._loads, self._protocol = dumps, loads, protocol

    @property
    def PROTOCOL(self):
        if self._protocol is None and self._dumps is None:
            return _codec.pickle_protocol()
        return self._protocol

    def dumps(self, obj):
        if self._dumps is None:
            return _codec.pickle_dumps(obj, self._protocol)
        return self._dumps(obj) if self._protocol is None else self._dumps(obj, self._protocol)

    def loads(self, data):
        return _codec.pickle_loads(data) if self._loads is None else self._loads(data)


pickle = Pickle()


class Datatype(_Object):
    """A basic MPI datatype: a name, a size in bytes and a buffer format character."""

    _mpi_kind = "Datatype"

    __slots__ = ("_name", "_size", "_char", "_wire")

    def __init__(self, name, size, char, wire=0):
        self._name = name
        self._size = size
        self._char = char
        self._wire = wire  # element code of docs/messages.md §3 (0: sent as raw bytes)

    name = property(lambda self: self._name)
    size = property(lambda self: self._size)
    extent = property(lambda self: self._size)
    lb = property(lambda self: 0)
    ub = property(lambda self: self._size)
    typechar = property(lambda self: self._char)

    def Get_name(self):
        return self._name

    def Get_size(self):
        return self._size

    def Get_extent(self):
        return (0, self._size)

    def __repr__(self):
        return "<mpi4py.MPI.Datatype %s>" % self._name

    def __reduce__(self):
        return self._name[4:] if self._name.startswith("MPI_") else self._name



DATATYPE_NULL = Datatype("MPI_DATATYPE_NULL", 0, "")
CHAR = Datatype("MPI_CHAR", 1, "c")
WCHAR = Datatype("MPI_WCHAR", 4, "U")
SIGNED_CHAR = Datatype("MPI_SIGNED_CHAR", 1, "b", 7)
UNSIGNED_CHAR = Datatype("MPI_UNSIGNED_CHAR", 1, "B", 12)
BYTE = Datatype("MPI_BYTE", 1, "B")
PACKED = Datatype("MPI_PACKED", 1, "B")
SHORT = SIGNED_SHORT = Datatype("MPI_SHORT", 2, "h", 6)
UNSIGNED_SHORT = Datatype("MPI_UNSIGNED_SHORT", 2, "H", 11)
INT = SIGNED_INT = Datatype("MPI_INT", 4, "i", 5)
UNSIGNED = UNSIGNED_INT = Datatype("MPI_UNSIGNED", 4, "I", 10)
LONG = SIGNED_LONG = Datatype("MPI_LONG", 8, "l", 3)
UNSIGNED_LONG = Datatype("MPI_UNSIGNED_LONG", 8, "L", 8)
LONG_LONG = SIGNED_LONG_LONG = Datatype("MPI_LONG_LONG_INT", 8, "q", 3)
UNSIGNED_LONG_LONG = Datatype("MPI_UNSIGNED_LONG_LONG", 8, "Q", 8)
FLOAT = Datatype("MPI_FLOAT", 4, "f", 2)
DOUBLE = Datatype("MPI_DOUBLE", 8, "d", 1)
LONG_DOUBLE = Datatype("MPI_LONG_DOUBLE", 16, "g")
C_BOOL = BOOL = Datatype("MPI_C_BOOL", 1, "?")
INT8_T = Datatype("MPI_INT8_T", 1, "b", 7)
INT16_T = Datatype("MPI_INT16_T", 2, "h", 6)
INT32_T = Datatype("MPI_INT32_T", 4, "i", 5)
INT64_T = Datatype("MPI_INT64_T", 8, "l", 3)
UINT8_T = Datatype("MPI_UINT8_T", 1, "B", 12)
UINT16_T = Datatype("MPI_UINT16_T", 2, "H", 11)
UINT32_T = Datatype("MPI_UINT32_T", 4, "I", 10)
UINT64_T = Datatype("MPI_UINT64_T", 8, "L", 8)
C_FLOAT_COMPLEX = C_COMPLEX = COMPLEX = Datatype("MPI_C_COMPLEX", 8, "F")
C_DOUBLE_COMPLEX = DOUBLE_COMPLEX = Datatype("MPI_C_DOUBLE_COMPLEX", 16, "D")
AINT = Datatype("MPI_AINT", 8, "p", 3)
OFFSET = Datatype("MPI_OFFSET", 8, "p", 3)
COUNT = Datatype("MPI_COUNT", 8, "p", 3)
INTEGER = Datatype("MPI_INTEGER", 4, "i", 5)
REAL = Datatype("MPI_REAL", 4, "f", 2)
DOUBLE_PRECISION = Datatype("MPI_DOUBLE_PRECISION", 8, "d", 1)

#: Buffer format character -> the datatype mpi4py infers for a buffer given without one.
_BY_FORMAT = {
    "c": CHAR, "b": SIGNED_CHAR, "B": BYTE, "?": C_BOOL, "h": SHORT, "H": UNSIGNED_SHORT, "i": INT,
    "I": UNSIGNED, "l": LONG, "L": UNSIGNED_LONG, "q": LONG_LONG, "Q": UNSIGNED_LONG_LONG, "n": LONG,
    "N": UNSIGNED_LONG, "f": FLOAT, "d": DOUBLE, "g": LONG_DOUBLE, "Zf": C_FLOAT_COMPLEX,
    "Zd": C_DOUBLE_COMPLEX, "F": C_FLOAT_COMPLEX, "D": C_DOUBLE_COMPLEX, "w": WCHAR, "U": WCHAR,
}
#: A datatype given as a string in a buffer spec, as mpi4py allows ([buf, "d"]).
_BY_TYPECHAR = dict(_BY_FORMAT, B=UNSIGNED_CHAR, p=AINT)
#: Format characters memoryview.cast accepts, for element-wise work without numpy.
_CASTABLE = frozenset("cbB?hHiIlLqQfd")


# ---------------------------------------------------------------------------------------------
# buffer specs


class _Buf:
    """A parsed buffer spec: `view` is the flat byte region, `count` elements of `dtype` per block."""

    __slots__ = ("view", "count", "dtype", "owner")

    def __init__(self, view, count, dtype, owner):
        self.view = view
        self.count = count
        self.dtype = dtype
        self.owner = owner

    def block(self, i):
        n = self.count * self.dtype._size
        return self.view[i * n:(i + 1) * n]


def _byte_view(obj, writable, call):
    try:
        view = memoryview(obj)
    except TypeError:
        raise TypeError(
            "%s: %s is not a buffer; pass a numpy array, array.array or bytearray "
            "(or use the lowercase call, which pickles any object)" % (call, type(obj).__name__)) from None
    if writable and view.readonly:
        raise TypeError("%s: the receive buffer (%s) is read-only; pass a bytearray, array.array or numpy array"
                        % (call, type(obj).__name__))
    return view


def _buffer(spec, writable, call, blocks=1):
    """Parses an mpi4py buffer spec; `blocks` > 1 for the root's buffer of Scatter/Gather/..."""
    if spec is IN_PLACE or spec is BOTTOM or spec is None:
        raise TypeError("%s: %r is not a buffer here" % (call, spec))
    count = displ = dtype = None
    if isinstance(spec, (list, tuple)):
        parts = list(spec)
        if not 1 <= len(parts) <= 4:
            raise TypeError("%s: a buffer spec is [buf], [buf, datatype], [buf, count, datatype] "
                            "or [buf, count, displ, datatype]; got %d items" % (call, len(parts)))
        obj = parts[0]
        if len(parts) == 2:
            if isinstance(parts[1], (Datatype, str)):
                dtype = parts[1]
            else:
                count = parts[1]
        elif len(parts) == 3:
            count, dtype = parts[1], parts[2]
        elif len(parts) == 4:
            count, displ, dtype = parts[1], parts[2], parts[3]
        if isinstance(count, (list, tuple)):
            if len(count) != 2:
                raise TypeError("%s: the count of a buffer spec is a number or (count, displ)" % call)
            count, displ = count
    else:
        obj = spec
    if obj is IN_PLACE or obj is BOTTOM:
        raise _unsupported("%s with %r inside a buffer spec" % (call, obj))
    raw = _byte_view(obj, writable, call)
    if dtype is None:
        fmt = raw.format.lstrip("@=<>!")
        dtype = _BY_FORMAT.get(fmt)
        if dtype is None:
            raise TypeError("%s: cannot tell the MPI datatype of a buffer of format %r; "
                            "pass it: [buf, MPI.DOUBLE]" % (call, raw.format))
    elif isinstance(dtype, str):
        found = _BY_TYPECHAR.get(dtype)
        if found is None:
            raise TypeError("%s: %r is not a datatype character distr knows" % (call, dtype))
        dtype = found
    elif not isinstance(dtype, Datatype) or dtype._size == 0:
        raise TypeError("%s: %r is not a datatype of this layer (MPI.DOUBLE, MPI.INT, ...)" % (call, dtype))
    if raw.ndim != 1 or raw.format != "B":
        if not raw.c_contiguous:
            raise TypeError("%s: the buffer is not contiguous; pass a contiguous one (numpy.ascontiguousarray)" % call)
        raw = raw.cast("B")
    size = dtype._size
    start = (displ or 0) * size
    if count is None:
        elements = (len(raw) - start) // size
        if elements % blocks:
            raise ValueError("%s: the buffer holds %d elements of %s, not a multiple of the %d ranks"
                             % (call, elements, dtype._name, blocks))
        count = elements // blocks
    end = start + count * blocks * size
    if count < 0 or start < 0 or end > len(raw):
        raise ValueError("%s: the buffer holds %d bytes but the spec asks for %d elements of %s (%d bytes) from element %d"
                         % (call, len(raw), count * blocks, dtype._name, count * blocks * size, displ or 0))
    return _Buf(raw[start:end], count, dtype, obj)


def _wire(buf):
    """(encoding, element, fingerprint) of a buffer frame: numeric when the datatype has a code."""
    element = buf.dtype._wire
    if element == 0:
        return 0, 0, 0
    owner = buf.owner
    if isinstance(owner, array.array):
        return 2, element, _codec.PY_ARRAY
    if type(owner).__module__ == "numpy":
        return 2, element, _codec.PY_NDARRAY
    return 2, element, 0


# ---------------------------------------------------------------------------------------------
# operations


def _max(x, y):
    return y if y > x else x


def _min(x, y):
    return y if y < x else x


def _location(better):
    """MAXLOC/MINLOC on (value, index) pairs: the better value; on a tie, the lower index."""

    def op(x, y):
        (u, i), (v, j) = x, y
        if better(u, v):
            return u, i
        if better(v, u) or j < i:
            return v, j
        return u, i

    return op


_maxloc = _location(lambda a, b: a > b)
_minloc = _location(lambda a, b: a < b)


class Op(_Object):
    """A reduction operation: a predefined one (MPI.SUM, ...) or a user function (Op.Create)."""

    _mpi_kind = "Op"

    __slots__ = ("_name", "_py", "_ufunc", "_user", "_commute")

    def __init__(self, name, py, ufunc=None, user=None, commute=True):
        self._name = name
        self._py = py          # f(x, y) on Python objects (what the lowercase calls use)
        self._ufunc = ufunc    # numpy function name for buffers
        self._user = user      # Op.Create's function(invec, inoutvec, datatype)
        self._commute = commute

    @classmethod
    def Create(cls, function, commute=False):
        """A user operation. Lowercase calls use `function(x, y, None)`'s return value; buffer
        calls call `function(invec, inoutvec, datatype)`, which updates inoutvec."""
        if not callable(function):
            raise TypeError("Op.Create: %r is not callable" % (function,))
        return cls("user operation %s" % getattr(function, "__name__", "?"), None, None, function, bool(commute))

    def __call__(self, x, y):
        if self._user is not None:
            return self._user(x, y, None)
        return self._py(x, y)

    def Is_commutative(self):
        return self._commute

    is_commutative = property(Is_commutative)

    def Is_predefined(self):
        return self._user is None

    is_predefined = property(Is_predefined)

    def Free(self):
        pass

    def __repr__(self):
        return "<mpi4py.MPI.Op %s>" % self._name

    def __reduce__(self):
        if self._user is not None:
            raise TypeError("a user operation (Op.Create) cannot be pickled")
        return self._name[4:]



SUM = Op("MPI_SUM", lambda x, y: x + y, "add")
PROD = Op("MPI_PROD", lambda x, y: x * y, "multiply")
MAX = Op("MPI_MAX", _max, "maximum")
MIN = Op("MPI_MIN", _min, "minimum")
LAND = Op("MPI_LAND", lambda x, y: bool(x) and bool(y), "logical_and")
LOR = Op("MPI_LOR", lambda x, y: bool(x) or bool(y), "logical_or")
LXOR = Op("MPI_LXOR", lambda x, y: bool((x or y) and not (x and y)), "logical_xor")
BAND = Op("MPI_BAND", lambda x, y: x & y, "bitwise_and")
BOR = Op("MPI_BOR", lambda x, y: x | y, "bitwise_or")
BXOR = Op("MPI_BXOR", lambda x, y: x ^ y, "bitwise_xor")
MAXLOC = Op("MPI_MAXLOC", _maxloc)
MINLOC = Op("MPI_MINLOC", _minloc)
REPLACE = Op("MPI_REPLACE", lambda x, y: y)
NO_OP = Op("MPI_NO_OP", lambda x, y: x)
OP_NULL = Op("MPI_OP_NULL", None)

#: Element-wise forms of the predefined ops for the pure-Python buffer path.
_ELEMENTWISE = {
    "MPI_SUM": lambda x, y: x + y,
    "MPI_PROD": lambda x, y: x * y,
    "MPI_MAX": _max,
    "MPI_MIN": _min,
    "MPI_LAND": lambda x, y: 1 if (x and y) else 0,
    "MPI_LOR": lambda x, y: 1 if (x or y) else 0,
    "MPI_LXOR": lambda x, y: 1 if (bool(x) != bool(y)) else 0,
    "MPI_BAND": lambda x, y: x & y,
    "MPI_BOR": lambda x, y: x | y,
    "MPI_BXOR": lambda x, y: x ^ y,
}


def _as_op(op, call):
    if isinstance(op, Op):
        if op._py is None and op._user is None:
            raise ValueError("%s: MPI.OP_NULL is not an operation" % call)
        return op
    if callable(op):
        return Op("a Python function", op, commute=False)
    raise TypeError("%s: op must be an MPI.Op (MPI.SUM, ...) or a function of two values; got %r" % (call, op))


def _buffer_combiner(op, dtype, call):
    """f(a, b) on the byte contents of two partial results (a from lower ranks) -> bytes-like."""
    if op._user is not None:
        user = op._user

        def combine_user(a, b):
            result = bytearray(b)
            user(memoryview(a), memoryview(result), dtype)
            return result

        return combine_user
    if op._ufunc is None:
        raise _unsupported("%s with %s on a buffer" % (call, op._name))
    np = _codec.numpy_module()
    if np is not None and dtype._char != "c":
        kind = np.dtype(dtype._char)
        ufunc = getattr(np, op._ufunc)

        def combine_numpy(a, b):
            x = np.frombuffer(a, dtype=kind)
            y = np.frombuffer(b, dtype=kind)
            return ufunc(x, y).astype(kind, copy=False).tobytes()

        return combine_numpy
    fmt = dtype._char
    if fmt not in _CASTABLE or fmt == "c":
        raise _unsupported("%s on %s buffers without numpy" % (call, dtype._name))
    elementwise = _ELEMENTWISE[op._name]
    convert = float if fmt in "fd" else (bool if fmt == "?" else int)

    def combine_python(a, b):
        x = memoryview(a).cast("B").cast(fmt)
        y = memoryview(b).cast("B").cast(fmt)
        out = bytearray(len(x) * x.itemsize)
        result = memoryview(out).cast(fmt)
        for i in range(len(x)):
            result[i] = convert(elementwise(x[i], y[i]))
        return out

    return combine_python


# ---------------------------------------------------------------------------------------------
# status and requests


class Status(_Object):
    """Where a received message came from: source and tag (in the communicator), size."""

    _mpi_kind = "Status"

    __slots__ = ("source", "tag", "error", "_bytes", "_cancelled")

    def __init__(self, status=None):
        if status is None:
            self.source, self.tag, self.error, self._bytes, self._cancelled = ANY_SOURCE, ANY_TAG, SUCCESS, 0, False
        else:
            self.source, self.tag, self.error = status.source, status.tag, status.error
            self._bytes, self._cancelled = status._bytes, status._cancelled

    def Get_source(self):
        return self.source

    def Set_source(self, source):
        self.source = source

    def Get_tag(self):
        return self.tag

    def Set_tag(self, tag):
        self.tag = tag

    def Get_error(self):
        return self.error

    def Set_error(self, error):
        self.error = error

    def Get_count(self, datatype=BYTE):
        """Elements of `datatype` received (UNDEFINED when the bytes are not a whole number of them)."""
        size = datatype._size
        if size == 0 or self._bytes % size:
            return UNDEFINED
        return self._bytes // size

    Get_elements = Get_count

    def Set_elements(self, datatype, count):
        self._bytes = count * datatype._size

    count = property(lambda self: self.Get_count())

    def Is_cancelled(self):
        return self._cancelled

    def Set_cancelled(self, flag):
        self._cancelled = bool(flag)

    cancelled = property(Is_cancelled)

    def __repr__(self):
        return "<mpi4py.MPI.Status source=%d tag=%d count=%d>" % (self.source, self.tag, self._bytes)



def _fill(status, source, tag, nbytes):
    if status is not None:
        status.source, status.tag, status.error, status._bytes = source, tag, SUCCESS, nbytes


def _loads(msg):
    if msg.encoding == 3:
        return pickle.loads(msg.payload)
    # A Swift rank or the distr module sent it (on COMM_WORLD): decode it as distr.recv would.
    return _codec.decode(msg)


class Request(_Object):
    """A nonblocking send (complete at once: sends are buffered) or receive (posted in order)."""

    _mpi_kind = "Request"

    __slots__ = ("_comm", "_posted", "_buf", "_value", "_done", "_active", "_status")

    def __init__(self, comm=None, posted=None, buf=None, value=None, done=False, status=None):
        self._comm = comm
        self._posted = posted    # the transport's PostedReceive (receives)
        self._buf = buf          # the _Buf of Irecv (None: a pickled irecv)
        self._value = value      # the result once complete
        self._done = done
        self._active = comm is not None
        self._status = status    # (source, tag, nbytes) once complete

    def _complete(self, status):
        """Finishes a request whose receive is done (or a send); returns its value; makes it inactive."""
        if not self._active:
            _fill(status, ANY_SOURCE, ANY_TAG, 0)
            return None
        if not self._done:
            try:
                msg = self._comm._transport().wait(self._posted)
            except _transport.PeerExited as error:
                self._comm._explain(error)
                raise
            self._status = self._comm._status_of(msg)
            self._value = None if self._buf is not None else _loads(msg)
            self._done = True
        if self._status is not None:
            _fill(status, *self._status)
        self._active = False
        value, self._value = self._value, None
        return value

    def _ready(self):
        if not self._active or self._done:
            return True
        return self._comm._transport().test(self._posted)

    def wait(self, status=None):
        return self._complete(status)

    def Wait(self, status=None):
        self._complete(status)
        return True

    def test(self, status=None):
        if self._ready():
            return True, self._complete(status)
        return False, None

    def Test(self, status=None):
        return self.test(status)[0]

    def Get_status(self, status=None):
        if not self._ready():
            return False
        if self._active and not self._done:
            self._complete(None)
            self._active = True  # still to be completed by wait/test
            self._done = True
        if self._status is not None:
            _fill(status, *self._status)
        return True

    def cancel(self):
        if self._active and not self._done:
            self._comm._transport().cancel(self._posted)
            self._done = True
            self._status = (ANY_SOURCE, ANY_TAG, 0)

    Cancel = cancel

    def Free(self):
        self._active = False

    def __bool__(self):
        return self._active

    def __eq__(self, other):
        if isinstance(other, Request):
            return self is other or (not self._active and not other._active)
        return NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = object.__hash__

    @classmethod
    def Waitall(cls, requests, statuses=None):
        cls.waitall(requests, statuses)
        return True

    @classmethod
    def waitall(cls, requests, statuses=None):
        results = []
        for i, request in enumerate(requests):
            results.append(request._complete(_nth(statuses, i)))
        return results

    @classmethod
    def waitany(cls, requests, status=None):
        active = [i for i, r in enumerate(requests) if r._active]
        if not active:
            _fill(status, ANY_SOURCE, ANY_TAG, 0)
            return UNDEFINED, None
        for i in active:
            if requests[i]._done:
                return i, requests[i]._complete(status)
        transport = requests[active[0]]._comm._transport()
        k = transport.wait_any([requests[i]._posted for i in active])
        return active[k], requests[active[k]]._complete(status)

    @classmethod
    def Waitany(cls, requests, status=None):
        return cls.waitany(requests, status)[0]

    @classmethod
    def testall(cls, requests, statuses=None):
        if all(r._ready() for r in requests):
            return True, cls.waitall(requests, statuses)
        return False, None

    @classmethod
    def Testall(cls, requests, statuses=None):
        return cls.testall(requests, statuses)[0]

    @classmethod
    def testany(cls, requests, status=None):
        active = [i for i, r in enumerate(requests) if r._active]
        if not active:
            _fill(status, ANY_SOURCE, ANY_TAG, 0)
            return UNDEFINED, True, None
        for i in active:
            if requests[i]._ready():
                return i, True, requests[i]._complete(status)
        return UNDEFINED, False, None

    @classmethod
    def Testany(cls, requests, status=None):
        index, flag, _ = cls.testany(requests, status)
        return index, flag



def _nth(statuses, i):
    if statuses is None:
        return None
    while len(statuses) <= i:
        statuses.append(Status())
    return statuses[i]


REQUEST_NULL = Request()

# ---------------------------------------------------------------------------------------------
# communicators

_contexts = {"highest": 1}  # the highest context id this rank ever used (COMM_SELF is 1); never reused


class _Group:
    """The Group interface of distr._collectives over a communicator: its ranks, its context tags.

    Values are pickled, except bytes-like ones when `raw` (the buffer collectives), which travel
    as raw frames.
    """

    __slots__ = ("comm", "rank", "size", "raw", "_t", "_members")

    def __init__(self, comm, raw=False):
        self.comm = comm
        self.rank = comm._rank
        self.size = comm._size
        self.raw = raw
        self._t = comm._transport()
        self._members = comm._members

    def send(self, dest, value, tag):
        if self.raw and isinstance(value, (bytes, bytearray, memoryview)):
            self._t.send(self._members[dest], tag, 0, 0, 0, value)
        else:
            self._t.send(self._members[dest], tag, 3, 0, 0, pickle.dumps(value))

    def recv(self, source, tag):
        msg = self._t.recv(self._members[source], tag, tag)
        if msg.encoding == 3:
            return pickle.loads(msg.payload)
        return msg.payload

    def next_collective_tags(self):
        return self.comm._next_tags()

    def world_rank(self, rank):
        """For _collectives' errors: they name world ranks, as every other error does."""
        return self._members[rank]


class Comm(_Object):
    """A communicator: a list of world ranks and a context id (see the module doc)."""

    _mpi_kind = "Comm"

    def __init__(self, members, context, name=""):
        self._members = members        # world rank of each communicator rank; None for COMM_NULL
        self._context = context
        self._name = name
        self._last_call = 0            # k of its latest collective call (counted by the transport)
        self._resolved = False
        self._rank = self._size = 0
        self._index = None             # world rank -> communicator rank (None: the identity)
        self._member_set = None        # for any-source receives (None: every rank)
        self._base = context << _CONTEXT_SHIFT

    # -- internals

    def _transport(self):
        if not self._resolved:
            self._resolve()
        if _state["finalized"]:
            raise _transport.DistrError("MPI.Finalize was called; no communication after it")
        return _state["transport"]

    def _resolve(self):
        if self._members is None:
            raise _transport.DistrError(
                "this communicator is MPI.COMM_NULL (freed, or Split with color MPI.UNDEFINED); it has no ranks")
        t = _t()
        if self._members == "world":
            self._members = list(range(t.count))
        elif self._members == "self":
            self._members = [t.id]
        if self._members != list(range(t.count)) or self._context != 0:
            self._index = {w: i for i, w in enumerate(self._members)}
            self._member_set = frozenset(self._members)
        self._size = len(self._members)
        self._rank = self._members.index(t.id)
        self._resolved = True

    def _next_tags(self):
        """The tag pair of this communicator's next collective call."""
        k = self._transport().next_collective_call(self._context) % (1 << 29)
        self._last_call = k
        tag = -self._base - 1 - 4 * k
        return tag, tag - 1

    def _status_of(self, msg):
        source = msg.source if self._index is None else self._index.get(msg.source, msg.source)
        return source, msg.tag - self._base, msg.length

    def _explain(self, error):
        """Rewords the transport's any-source PeerExited for a communicator smaller than the world."""
        if error.rank is None and self._index is not None and self._size < _t().count:
            error.args = ("every other rank of this communicator (world ranks %s) has exited and no matching "
                          "message is pending" % ", ".join(str(r) for r in self._members if r != _t().id),)

    def _dest(self, dest, call):
        if not isinstance(dest, int) or not 0 <= dest < self._size:
            if dest == PROC_NULL:
                return None
            raise _transport.DistrError("%s: %r is not a rank of this communicator (ranks 0...%d)" % (call, dest, self._size - 1))
        return self._members[dest]

    def _source(self, source, call):
        """(world rank or None for any, members) of a receive's source."""
        if source == ANY_SOURCE:
            return None, self._member_set
        if not isinstance(source, int) or not 0 <= source < self._size:
            raise _transport.DistrError(
                "%s: source %r is not a rank of this communicator (ranks 0...%d, or MPI.ANY_SOURCE)" % (call, source, self._size - 1))
        return self._members[source], None

    def _send_tag(self, tag, call):
        if not isinstance(tag, int) or not 0 <= tag <= _TAG_MAX:
            raise _transport.DistrError("%s: tag %r is not in 0...%d (MPI.TAG_UB)" % (call, tag, _TAG_MAX))
        return self._base + tag

    def _recv_tags(self, tag, call):
        if tag == ANY_TAG:
            return self._base, self._base + _TAG_MAX
        return (self._send_tag(tag, call),) * 2

    def _root(self, root, call):
        if not isinstance(root, int) or not 0 <= root < self._size:
            raise _transport.DistrError("%s: root %r is not a rank of this communicator (ranks 0...%d)" % (call, root, self._size - 1))
        return root


    # -- identity

    def Get_rank(self):
        if not self._resolved:
            self._transport()
        return self._rank

    def Get_size(self):
        if not self._resolved:
            self._transport()
        return self._size

    rank = property(Get_rank)
    size = property(Get_size)

    def Get_name(self):
        return self._name

    def Set_name(self, name):
        self._name = name

    name = property(Get_name, Set_name)

    def Get_attr(self, keyval):
        if keyval == TAG_UB:
            return _TAG_MAX
        raise _unsupported("Comm.Get_attr(%r) (only MPI.TAG_UB)" % (keyval,))

    def Is_inter(self):
        return False

    def Is_intra(self):
        return True

    def __eq__(self, other):
        if isinstance(other, Comm):
            return self is other or (self._members is None and other._members is None)
        return NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = object.__hash__

    def __bool__(self):
        return self._members is not None

    def __repr__(self):
        return "<mpi4py.MPI.%s %s>" % (type(self).__name__, self._name or "context %d" % self._context)

    # -- making and ending communicators

    def Split(self, color=0, key=0):
        """Ranks with the same color form a communicator, ordered by key then by rank here."""
        self._transport()
        if color != UNDEFINED and (not isinstance(color, int) or color < 0):
            raise _transport.DistrError("Comm.Split: color %r must be a whole number >= 0 or MPI.UNDEFINED" % (color,))
        everyone = _collectives.allgather(_Group(self), (color, key, _contexts["highest"]))
        # The new context id is one more than the highest id any rank of this communicator has
        # ever used. So on every rank that joins one of the new communicators it differs from the
        # id of every communicator that rank has (ids are never reused on a rank). A message
        # carrying it is sent only by a member of the new communicator to another member, and
        # each receiver has exactly one communicator with that id: this one. Different colors
        # share the id safely, because their members are disjoint.
        context = max(highest for _, _, highest in everyone) + 1
        _contexts["highest"] = context
        if color == UNDEFINED:
            return COMM_NULL
        ranks = sorted((k, r) for r, (c, k, _) in enumerate(everyone) if c == color)
        members = [self._members[r] for _, r in ranks]
        return Intracomm(members, context)

    def Dup(self, info=None):
        """A communicator with the same ranks and a context of its own."""
        if info is not None:
            raise _unsupported("Comm.Dup with info")
        self._transport()
        highest = _collectives.allreduce(_Group(self), _contexts["highest"], _max)
        # The same argument as in Split: higher than every id any member has used.
        context = highest + 1
        _contexts["highest"] = context
        return type(self)(list(self._members), context)

    def Clone(self):
        return self.Dup()

    def Free(self):
        if self is COMM_WORLD or self is COMM_SELF:
            raise _transport.DistrError("Comm.Free: MPI.COMM_WORLD and MPI.COMM_SELF cannot be freed")
        self._members = None
        self._resolved = False

    def Abort(self, errorcode=0):
        """Ends this rank at once with `errorcode` (1 for 0); distr-master then ends the job (a
        failing rank stops the others) and exits with it."""
        rank = _state["transport"].id if _state["transport"] is not None else os.environ.get("DISTR_NODE_ID", "?")
        sys.stdout.flush()
        sys.stderr.write("distr: MPI.Comm.Abort(%d) called by rank %s; ending the job\n" % (errorcode, rank))
        sys.stderr.flush()
        # Exit status 0 would not end the job (and 256 would be 0): those end with 1.
        os._exit((errorcode & 0xFF) or 1)

    # -- point to point, pickled

    def send(self, obj, dest, tag=0):
        self._transport()
        world = self._dest(dest, "Comm.send")
        if world is None:
            return
        self._t_send(world, self._send_tag(tag, "Comm.send"), pickle.dumps(obj))

    def _t_send(self, world, tag, payload):
        _state["transport"].send(world, tag, 3, 0, 0, payload)

    ssend = bsend = send

    def recv(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        t = self._transport()
        if source == PROC_NULL:
            _fill(status, PROC_NULL, ANY_TAG, 0)
            return None
        world, members = self._source(source, "Comm.recv")
        lo, hi = self._recv_tags(tag, "Comm.recv")
        try:
            msg = t.recv(world, lo, hi, members=members)
        except _transport.PeerExited as error:
            self._explain(error)
            raise
        if status is not None:
            _fill(status, *self._status_of(msg))
        return _loads(msg)

    def isend(self, obj, dest, tag=0):
        self.send(obj, dest, tag)
        return Request(self, done=True)

    issend = ibsend = isend

    def irecv(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG):
        t = self._transport()
        if source == PROC_NULL:
            return Request(self, done=True, status=(PROC_NULL, ANY_TAG, 0))
        world, members = self._source(source, "Comm.irecv")
        lo, hi = self._recv_tags(tag, "Comm.irecv")
        return Request(self, posted=t.post(world, lo, hi, members=members))

    def sendrecv(self, sendobj, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE, recvtag=ANY_TAG, status=None):
        # Sends are buffered, so sending first cannot deadlock.
        self.send(sendobj, dest, sendtag)
        return self.recv(None, source, recvtag, status)

    def probe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        self._probe(source, tag, status, True, "Comm.probe")
        return True

    def iprobe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return self._probe(source, tag, status, False, "Comm.iprobe")

    def _probe(self, source, tag, status, block, call):
        t = self._transport()
        if source == PROC_NULL:
            _fill(status, PROC_NULL, ANY_TAG, 0)
            return True
        world, members = self._source(source, call)
        lo, hi = self._recv_tags(tag, call)
        try:
            msg = t.probe(world, lo, hi, block=block, members=members)
        except _transport.PeerExited as error:
            self._explain(error)
            raise
        if msg is None:
            return False
        _fill(status, *self._status_of(msg))
        return True

    Probe = probe
    Iprobe = iprobe

    # -- point to point, buffers

    def Send(self, buf, dest, tag=0):
        self._transport()
        world = self._dest(dest, "Comm.Send")
        if world is None:
            return
        b = _buffer(buf, False, "Comm.Send")
        encoding, element, fingerprint = _wire(b)
        _state["transport"].send(world, self._send_tag(tag, "Comm.Send"), encoding, element, fingerprint, b.view)

    Ssend = Bsend = Rsend = Send

    def Recv(self, buf, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        t = self._transport()
        b = _buffer(buf, True, "Comm.Recv")
        if source == PROC_NULL:
            _fill(status, PROC_NULL, ANY_TAG, 0)
            return
        world, members = self._source(source, "Comm.Recv")
        lo, hi = self._recv_tags(tag, "Comm.Recv")
        # The transport reads the payload into b.view (or copies it there once).
        try:
            msg = t.recv(world, lo, hi, into=b.view, members=members)
        except _transport.PeerExited as error:
            self._explain(error)
            raise
        _fill(status, *self._status_of(msg))

    def Isend(self, buf, dest, tag=0):
        self.Send(buf, dest, tag)
        return Request(self, done=True)

    Issend = Ibsend = Irsend = Isend

    def Irecv(self, buf, source=ANY_SOURCE, tag=ANY_TAG):
        t = self._transport()
        b = _buffer(buf, True, "Comm.Irecv")
        if source == PROC_NULL:
            return Request(self, buf=b, done=True, status=(PROC_NULL, ANY_TAG, 0))
        world, members = self._source(source, "Comm.Irecv")
        lo, hi = self._recv_tags(tag, "Comm.Irecv")
        return Request(self, posted=t.post(world, lo, hi, into=b.view, members=members), buf=b)

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE, recvtag=ANY_TAG, status=None):
        if recvbuf is None:
            raise TypeError("Comm.Sendrecv: recvbuf is required (use Sendrecv_replace for one buffer)")
        self.Send(sendbuf, dest, sendtag)
        self.Recv(recvbuf, source, recvtag, status)

    # -- collectives, pickled

    def barrier(self):
        self._transport()
        _collectives.barrier(_Group(self))

    def Barrier(self):
        self.barrier()

    def bcast(self, obj, root=0):
        self._transport()
        return _collectives.bcast(_Group(self), obj, self._root(root, "Comm.bcast"))

    def scatter(self, sendobj, root=0):
        self._transport()
        root = self._root(root, "Comm.scatter")
        if self._rank == root:
            if sendobj is None or len(sendobj) != self._size:
                raise ValueError("Comm.scatter: the root must pass a sequence of %d values (one per rank); got %s"
                                 % (self._size, "None" if sendobj is None else "%d" % len(sendobj)))
            sendobj = list(sendobj)
        return _collectives.scatter(_Group(self), sendobj, root)

    def gather(self, sendobj, root=0):
        self._transport()
        result = _collectives.gather(_Group(self), sendobj, self._root(root, "Comm.gather"))
        return result if self._rank == root else None

    def allgather(self, sendobj):
        self._transport()
        return list(_collectives.allgather(_Group(self), sendobj))

    def alltoall(self, sendobj):
        self._transport()
        if sendobj is None or len(sendobj) != self._size:
            raise ValueError("Comm.alltoall: pass a sequence of %d values (one per rank)" % self._size)
        return list(_collectives.alltoall(_Group(self), list(sendobj)))

    def reduce(self, sendobj, op=SUM, root=0):
        self._transport()
        root = self._root(root, "Comm.reduce")
        return self._reduce(_Group(self), sendobj, _as_op(op, "Comm.reduce"), root, True)

    def _reduce(self, group, value, op, root, ordered):
        """The reduction at root (None elsewhere). `ordered`: combine strictly in rank order
        (mpi4py does for Python objects: SUM on lists concatenates in rank order)."""
        if not ordered or root == 0:
            result = _collectives.reduce(group, value, op, root)
            return result if self._rank == root else None
        # Rank order: reduce at rank 0 (its binomial tree combines lower ranks first), then hand
        # the result to root on the spare third tag of that collective call.
        result = _collectives.reduce(group, value, op, 0)
        spare = -self._base - 3 - 4 * self._last_call
        if self._rank == 0:
            group.send(root, result, spare)
            return None
        if self._rank == root:
            return group.recv(0, spare)
        return None

    def allreduce(self, sendobj, op=SUM):
        self._transport()
        return _collectives.allreduce(_Group(self), sendobj, _as_op(op, "Comm.allreduce"))

    def scan(self, sendobj, op=SUM):
        self._transport()
        return _collectives.scan(_Group(self), sendobj, _as_op(op, "Comm.scan"))

    def exscan(self, sendobj, op=SUM):
        self._transport()
        return _collectives.exscan(_Group(self), sendobj, _as_op(op, "Comm.exscan"))

    # -- collectives, buffers

    def _in_place_or(self, spec, writable, call, blocks=1):
        return None if spec is IN_PLACE else _buffer(spec, writable, call, blocks)

    def Bcast(self, buf, root=0):
        self._transport()
        root = self._root(root, "Comm.Bcast")
        b = _buffer(buf, self._rank != root, "Comm.Bcast")
        data = _collectives.bcast(_Group(self, raw=True), b.view if self._rank == root else None, root)
        if self._rank != root:
            _copy(b.view, data, "Comm.Bcast")

    def Scatter(self, sendbuf, recvbuf, root=0):
        self._transport()
        root = self._root(root, "Comm.Scatter")
        chunks = None
        if self._rank == root:
            s = _buffer(sendbuf, False, "Comm.Scatter", self._size)
            chunks = [s.block(i).tobytes() for i in range(self._size)]
        mine = _collectives.scatter(_Group(self, raw=True), chunks, root)
        if recvbuf is IN_PLACE and self._rank == root:
            return
        _copy(_buffer(recvbuf, True, "Comm.Scatter").view, mine, "Comm.Scatter")

    def Gather(self, sendbuf, recvbuf, root=0):
        self._transport()
        root = self._root(root, "Comm.Gather")
        r = _buffer(recvbuf, True, "Comm.Gather", self._size) if self._rank == root else None
        if sendbuf is IN_PLACE and r is not None:
            mine = r.block(self._rank).tobytes()
        else:
            mine = _buffer(sendbuf, False, "Comm.Gather").view.tobytes()
        parts = _collectives.gather(_Group(self, raw=True), mine, root)
        if r is not None:
            for i, part in enumerate(parts):
                _copy(r.block(i), part, "Comm.Gather")

    def Allgather(self, sendbuf, recvbuf):
        self._transport()
        r = _buffer(recvbuf, True, "Comm.Allgather", self._size)
        if sendbuf is IN_PLACE:
            mine = r.block(self._rank).tobytes()
        else:
            mine = _buffer(sendbuf, False, "Comm.Allgather").view.tobytes()
        for i, part in enumerate(_collectives.allgather(_Group(self, raw=True), mine)):
            _copy(r.block(i), part, "Comm.Allgather")

    def Alltoall(self, sendbuf, recvbuf):
        self._transport()
        r = _buffer(recvbuf, True, "Comm.Alltoall", self._size)
        s = r if sendbuf is IN_PLACE else _buffer(sendbuf, False, "Comm.Alltoall", self._size)
        chunks = [s.block(i).tobytes() for i in range(self._size)]
        for i, part in enumerate(_collectives.alltoall(_Group(self, raw=True), chunks)):
            _copy(r.block(i), part, "Comm.Alltoall")

    def _reduce_input(self, sendbuf, recvbuf, call, writable_recv):
        r = None if recvbuf is None else _buffer(recvbuf, True, call) if writable_recv else None
        if sendbuf is IN_PLACE:
            if r is None:
                raise TypeError("%s: MPI.IN_PLACE needs the receive buffer on this rank" % call)
            return r, r.view.tobytes(), r.dtype
        s = _buffer(sendbuf, False, call)
        return r, s.view.tobytes(), s.dtype

    def Reduce(self, sendbuf, recvbuf, op=SUM, root=0):
        self._transport()
        root = self._root(root, "Comm.Reduce")
        op = _as_op(op, "Comm.Reduce")
        r, mine, dtype = self._reduce_input(sendbuf, recvbuf, "Comm.Reduce", self._rank == root)
        combine = _buffer_combiner(op, dtype, "Comm.Reduce")
        result = self._reduce(_Group(self, raw=True), mine, combine, root, not op._commute)
        if self._rank == root:
            _copy(r.view, result, "Comm.Reduce")

    def Allreduce(self, sendbuf, recvbuf, op=SUM):
        self._transport()
        op = _as_op(op, "Comm.Allreduce")
        r, mine, dtype = self._reduce_input(sendbuf, recvbuf, "Comm.Allreduce", True)
        combine = _buffer_combiner(op, dtype, "Comm.Allreduce")
        _copy(r.view, _collectives.allreduce(_Group(self, raw=True), mine, combine), "Comm.Allreduce")

    def Scan(self, sendbuf, recvbuf, op=SUM):
        self._buffer_scan(sendbuf, recvbuf, op, False, "Comm.Scan")

    def Exscan(self, sendbuf, recvbuf, op=SUM):
        self._buffer_scan(sendbuf, recvbuf, op, True, "Comm.Exscan")

    def _buffer_scan(self, sendbuf, recvbuf, op, exclusive, call):
        self._transport()
        op = _as_op(op, call)
        r, mine, dtype = self._reduce_input(sendbuf, recvbuf, call, True)
        scan = _collectives.exscan if exclusive else _collectives.scan
        result = scan(_Group(self, raw=True), mine, _buffer_combiner(op, dtype, call))
        if result is not None:  # Exscan leaves rank 0's buffer as it was (MPI: undefined)
            _copy(r.view, result, call)


def _copy(view, data, call):
    if len(data) != len(view):
        raise _transport.DistrError("%s: received %d bytes for a buffer of %d bytes; every rank must pass "
                                    "buffers of the same size and datatype" % (call, len(data), len(view)))
    view[:] = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data


class Intracomm(Comm):
    """A communicator of one group of ranks (every communicator of this layer)."""


COMM_NULL = Comm(None, -1, "MPI_COMM_NULL")
COMM_WORLD = Intracomm("world", 0, "MPI_COMM_WORLD")
COMM_SELF = Intracomm("self", 1, "MPI_COMM_SELF")

# ---------------------------------------------------------------------------------------------
# what the layer does not have

# The public names of mpi4py 4.1.2 (module MPI and its classes): a name listed here that this
# layer does not define raises NotImplementedError; any other missing name an AttributeError.
_MODULE_NAMES = """
AINT ANY_SOURCE ANY_TAG APPNUM Add_error_class Add_error_code Add_error_string Aint_add Aint_diff
Alloc_mem Attach_buffer BAND BFLOAT16_T BOOL BOR BOTTOM BSEND_OVERHEAD BUFFER_AUTOMATIC BXOR BYTE
BottomType BufferAutomaticType CART CHAR CHARACTER COMBINER_CONTIGUOUS COMBINER_DARRAY COMBINER_DUP
COMBINER_F90_COMPLEX COMBINER_F90_INTEGER COMBINER_F90_REAL COMBINER_HINDEXED
COMBINER_HINDEXED_BLOCK COMBINER_HVECTOR COMBINER_INDEXED COMBINER_INDEXED_BLOCK COMBINER_NAMED
COMBINER_RESIZED COMBINER_STRUCT COMBINER_SUBARRAY COMBINER_VALUE_INDEX COMBINER_VECTOR COMM_NULL
COMM_SELF COMM_TYPE_HW_GUIDED COMM_TYPE_HW_UNGUIDED COMM_TYPE_RESOURCE_GUIDED COMM_TYPE_SHARED
COMM_WORLD COMPLEX COMPLEX16 COMPLEX32 COMPLEX4 COMPLEX8 CONGRUENT COUNT CXX_BOOL CXX_DOUBLE_COMPLEX
CXX_FLOAT_COMPLEX CXX_LONG_DOUBLE_COMPLEX C_BOOL C_COMPLEX C_DOUBLE_COMPLEX C_FLOAT_COMPLEX
C_LONG_DOUBLE_COMPLEX Cartcomm Close_port Comm Compute_dims DATATYPE_NULL DISPLACEMENT_CURRENT
DISP_CUR DISTRIBUTE_BLOCK DISTRIBUTE_CYCLIC DISTRIBUTE_DFLT_DARG DISTRIBUTE_NONE DIST_GRAPH DOUBLE
DOUBLE_COMPLEX DOUBLE_INT DOUBLE_PRECISION Datatype Detach_buffer Distgraphcomm ERRHANDLER_NULL
ERRORS_ABORT ERRORS_ARE_FATAL ERRORS_RETURN ERR_ABI ERR_ACCESS ERR_AMODE ERR_ARG ERR_ASSERT
ERR_BAD_FILE ERR_BASE ERR_BUFFER ERR_COMM ERR_CONVERSION ERR_COUNT ERR_DIMS ERR_DISP ERR_DUP_DATAREP
ERR_ERRHANDLER ERR_FILE ERR_FILE_EXISTS ERR_FILE_IN_USE ERR_GROUP ERR_INFO ERR_INFO_KEY
ERR_INFO_NOKEY ERR_INFO_VALUE ERR_INTERN ERR_IN_STATUS ERR_IO ERR_KEYVAL ERR_LASTCODE ERR_LOCKTYPE
ERR_NAME ERR_NOT_SAME ERR_NO_MEM ERR_NO_SPACE ERR_NO_SUCH_FILE ERR_OP ERR_OTHER ERR_PENDING ERR_PORT
ERR_PROC_ABORTED ERR_PROC_FAILED ERR_PROC_FAILED_PENDING ERR_QUOTA ERR_RANK ERR_READ_ONLY
ERR_REQUEST ERR_REVOKED ERR_RMA_ATTACH ERR_RMA_CONFLICT ERR_RMA_FLAVOR ERR_RMA_RANGE ERR_RMA_SHARED
ERR_RMA_SYNC ERR_ROOT ERR_SERVICE ERR_SESSION ERR_SIZE ERR_SPAWN ERR_TAG ERR_TOPOLOGY ERR_TRUNCATE
ERR_TYPE ERR_UNKNOWN ERR_UNSUPPORTED_DATAREP ERR_UNSUPPORTED_OPERATION ERR_VALUE_TOO_LARGE ERR_WIN
Errhandler Exception FILE_NULL FLOAT FLOAT16_T FLOAT32_T FLOAT64_T FLOAT_INT F_BOOL F_COMPLEX
F_DOUBLE F_DOUBLE_COMPLEX F_ERROR F_FLOAT F_FLOAT_COMPLEX F_INT F_SOURCE F_STATUS_SIZE F_TAG File
Finalize Flush_buffer Free_mem GRAPH GROUP_EMPTY GROUP_NULL Get_abi_fortran_info Get_abi_info
Get_abi_version Get_address Get_error_class Get_error_string Get_hw_resource_info
Get_library_version Get_processor_name Get_version Graphcomm Grequest Group IDENT INFO_ENV INFO_NULL
INT INT16_T INT32_T INT64_T INT8_T INTEGER INTEGER1 INTEGER16 INTEGER2 INTEGER4 INTEGER8 INT_INT
IN_PLACE IO Iflush_buffer InPlaceType Info Init Init_thread Intercomm Intracomm Is_finalized
Is_initialized Is_thread_main KEYVAL_INVALID LAND LASTUSEDCODE LOCK_EXCLUSIVE LOCK_SHARED LOGICAL
LOGICAL1 LOGICAL16 LOGICAL2 LOGICAL4 LOGICAL8 LONG LONG_DOUBLE LONG_DOUBLE_INT LONG_INT LONG_LONG
LOR LXOR Lookup_name MAX MAXLOC MAX_DATAREP_STRING MAX_ERROR_STRING MAX_INFO_KEY MAX_INFO_VAL
MAX_LIBRARY_VERSION_STRING MAX_OBJECT_NAME MAX_PORT_NAME MAX_PROCESSOR_NAME MAX_PSET_NAME_LEN
MAX_STRINGTAG_LEN MESSAGE_NO_PROC MESSAGE_NULL MIN MINLOC MODE_APPEND MODE_CREATE
MODE_DELETE_ON_CLOSE MODE_EXCL MODE_NOCHECK MODE_NOPRECEDE MODE_NOPUT MODE_NOSTORE MODE_NOSUCCEED
MODE_RDONLY MODE_RDWR MODE_SEQUENTIAL MODE_UNIQUE_OPEN MODE_WRONLY Message NO_OP OFFSET OP_NULL
ORDER_C ORDER_F ORDER_FORTRAN Op Open_port PACKED PROC_NULL PROD Pcontrol Pickle Prequest
Publish_name Query_thread REAL REAL16 REAL2 REAL4 REAL8 REPLACE REQUEST_NULL ROOT Register_datarep
Remove_error_class Remove_error_code Remove_error_string Request SEEK_CUR SEEK_END SEEK_SET
SESSION_NULL SHORT SHORT_INT SIGNED_CHAR SIGNED_INT SIGNED_LONG SIGNED_LONG_LONG SIGNED_SHORT
SIMILAR SINT16_T SINT32_T SINT64_T SINT8_T SUBVERSION SUCCESS SUM Session Status TAG_UB
THREAD_FUNNELED THREAD_MULTIPLE THREAD_SERIALIZED THREAD_SINGLE TWOINT TYPECLASS_COMPLEX
TYPECLASS_INTEGER TYPECLASS_LOGICAL TYPECLASS_REAL Topocomm UINT16_T UINT32_T UINT64_T UINT8_T
UNDEFINED UNEQUAL UNIVERSE_SIZE UNSIGNED UNSIGNED_CHAR UNSIGNED_INT UNSIGNED_LONG UNSIGNED_LONG_LONG
UNSIGNED_SHORT UNWEIGHTED Unpublish_name VERSION WCHAR WEIGHTS_EMPTY WIN_BASE WIN_CREATE_FLAVOR
WIN_DISP_UNIT WIN_FLAVOR WIN_FLAVOR_ALLOCATE WIN_FLAVOR_CREATE WIN_FLAVOR_DYNAMIC WIN_FLAVOR_SHARED
WIN_MODEL WIN_NULL WIN_SEPARATE WIN_SIZE WIN_UNIFIED WTIME_IS_GLOBAL Win Wtick Wtime _addressof
_comm_lock _comm_lock_table _commctx_inter _commctx_intra _datatype_create _datatype_decode
_handleof _keyval_registry _set_abort_status _sizeof _typealign _typecode _typedict _typedict_c
_typedict_f buffer get_vendor memory pickle
"""
_COMM_NAMES = """
Abort Accept Ack_failed Agree Allgather Allgather_init Allgatherv Allgatherv_init Allreduce
Allreduce_init Alltoall Alltoall_init Alltoallv Alltoallv_init Alltoallw Alltoallw_init
Attach_buffer Barrier Barrier_init Bcast Bcast_init Bsend Bsend_init Call_errhandler Cart_map Clone
Compare Connect Create Create_cart Create_dist_graph Create_dist_graph_adjacent Create_errhandler
Create_from_group Create_graph Create_group Create_intercomm Create_keyval Delete_attr Detach_buffer
Disconnect Dup Dup_with_info Exscan Exscan_init Flush_buffer Free Free_keyval Gather Gather_init
Gatherv Gatherv_init Get_attr Get_errhandler Get_failed Get_group Get_info Get_name Get_parent
Get_rank Get_size Get_topology Graph_map Iagree Iallgather Iallgatherv Iallreduce Ialltoall
Ialltoallv Ialltoallw Ibarrier Ibcast Ibsend Idup Idup_with_info Iexscan Iflush_buffer Igather
Igatherv Improbe Iprobe Irecv Ireduce Ireduce_scatter Ireduce_scatter_block Irsend Is_inter Is_intra
Is_revoked Iscan Iscatter Iscatterv Isend Isendrecv Isendrecv_replace Ishrink Issend Join Mprobe
Precv_init Probe Psend_init Recv Recv_init Reduce Reduce_init Reduce_scatter Reduce_scatter_block
Reduce_scatter_block_init Reduce_scatter_init Revoke Rsend Rsend_init Scan Scan_init Scatter
Scatter_init Scatterv Scatterv_init Send Send_init Sendrecv Sendrecv_replace Set_attr Set_errhandler
Set_info Set_name Shrink Spawn Spawn_multiple Split Split_type Ssend Ssend_init allgather allreduce
alltoall barrier bcast bsend exscan f2py free fromhandle fromint gather group handle ibsend improbe
info iprobe irecv is_inter is_intra is_topo isend issend mprobe name probe py2f rank recv reduce
scan scatter send sendrecv size ssend toint topology
"""
_REQUEST_NAMES = """
Cancel Free Get_status Get_status_all Get_status_any Get_status_some Test Testall Testany Testsome
Wait Waitall Waitany Waitsome cancel f2py free fromhandle fromint get_status get_status_all
get_status_any get_status_some handle py2f test testall testany testsome toint wait waitall waitany
waitsome
"""
_STATUS_NAMES = """
Get_count Get_elements Get_error Get_source Get_tag Is_cancelled Set_cancelled Set_elements
Set_error Set_source Set_tag cancelled count error f2py py2f source tag tomemory
"""
_DATATYPE_NAMES = """
Commit Create_contiguous Create_darray Create_dup Create_f90_complex Create_f90_integer
Create_f90_real Create_hindexed Create_hindexed_block Create_hvector Create_indexed
Create_indexed_block Create_keyval Create_resized Create_struct Create_subarray Create_vector
Delete_attr Dup Free Free_keyval Get_attr Get_contents Get_envelope Get_extent Get_name Get_size
Get_true_extent Get_value_index Match_size Pack Pack_external Pack_external_size Pack_size Resized
Set_attr Set_name Unpack Unpack_external combiner contents decode envelope extent f2py free fromcode
fromhandle fromint handle is_named is_predefined lb name py2f size tocode toint true_extent true_lb
true_ub typechar typestr ub
"""
_PICKLE_NAMES = """
PROTOCOL THRESHOLD dumps dumps_oob loads loads_oob
"""
_OP_NAMES = """
Create Free Is_commutative Reduce_local f2py free fromhandle fromint handle is_commutative
is_predefined py2f toint
"""

_NAME_SETS = {}


def _known(names):
    found = _NAME_SETS.get(id(names))
    if found is None:
        found = _NAME_SETS[id(names)] = frozenset(names.split())
    return found


_NAMES_OF = {
    "Comm": "_COMM_NAMES", "Request": "_REQUEST_NAMES", "Status": "_STATUS_NAMES", "Datatype": "_DATATYPE_NAMES",
    "Op": "_OP_NAMES", "Pickle": "_PICKLE_NAMES",
}


def _missing(obj, kind, name):
    """What a missing attribute of a layer object raises: NotImplementedError for mpi4py's names."""
    names = globals().get(_NAMES_OF.get(kind, ""), "")
    if not name.startswith("_") and name in _known(names):
        raise _unsupported("MPI.%s.%s" % (kind, name))
    if isinstance(obj, type):
        raise AttributeError("type object '%s' has no attribute '%s'" % (obj.__name__, name))
    raise AttributeError("'%s' object has no attribute '%s'" % (type(obj).__name__, name))


def __getattr__(name):
    if not name.startswith("_") and name in _known(_MODULE_NAMES):
        raise _unsupported("MPI.%s" % name)
    raise AttributeError("module 'mpi4py.MPI' has no attribute '%s'" % name)
