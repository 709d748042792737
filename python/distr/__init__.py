"""distr for Python: message passing between the ranks of a distr job (Python and Swift ranks alike).

    import distr
    right = (distr.node_id + 1) % distr.n_node
    distr.send(right, {"from": distr.node_id})
    print(distr.recv(source=(distr.node_id - 1) % distr.n_node))
    total = distr.allreduce(distr.node_id)          # SUM by default; PROD, MIN, MAX or any f(a, b)

Run it with `distr-master run --local 4 prog.py`. Standard library only; numpy is used when it is
importable (DISTR_NUMPY=0 turns that off).

Values: bytes/bytearray travel raw, array.array and 1-D numpy arrays as raw numeric arrays;
str, int, float, bool and lists/dicts of them in the binary Codable encoding a Swift rank decodes
(String, Int, Double, Bool, [T], [String: T]); anything else is pickled (Python ranks only).
docs/messages.md ("Python ranks") has the whole table. A receive may say what it expects with
`kind=` (str, int, float, bool, bytes, [spec], {str: spec}, a tuple of specs for a Swift struct);
a message of another type raises DistrError naming the sender and both types.

Sends are buffered (they never wait for the receiver's recv); a receive from a rank that exited
raises PeerExited, and every call raises JobAborted once the job is being ended.
"""

from . import _codec, _collectives
from ._collectives import MAX, MIN, PROD, SUM, Op
from ._transport import DistrError, JobAborted, PeerExited, world as _world

__all__ = ["ANY", "SUM", "PROD", "MIN", "MAX", "Op", "DistrError", "PeerExited", "JobAborted", "Node",
           "send", "recv", "recv_message", "probe", "barrier", "bcast", "scatter", "gather", "allgather",
           "alltoall", "reduce", "allreduce", "scan", "exscan", "node_id", "n_node"]

#: Any source, or any tag (user tags only: 0 or more).
ANY = None
_TAG_MAX = (1 << 63) - 1


def __getattr__(name):
    # Resolved on first use, so `import distr` works anywhere and only using it outside distr fails.
    if name == "node_id":
        return _world().id
    if name == "n_node":
        return _world().count
    raise AttributeError("module 'distr' has no attribute %r" % name)


class _WorldGroup:
    """Every rank of the job, with Swift's encodings and collective tags (docs/messages.md §5)."""

    def __init__(self, transport):
        self.t = transport
        self.rank = transport.id
        self.size = transport.count

    def send(self, dest, value, tag):
        encoding, element, fingerprint, payload = _codec.encode(value)
        self.t.send(dest, tag, encoding, element, fingerprint, payload)

    def recv(self, source, tag):
        return _codec.decode(self.t.recv(source, tag, tag))

    def next_collective_tags(self):
        tag = -1 - 4 * self.t.next_collective_call(0)
        return tag, tag - 1


_group = None


def _world_group():
    global _group
    if _group is None:
        _group = _WorldGroup(_world())
    return _group


def _check_rank(t, rank, what):
    if type(rank) is not int or not 0 <= rank < t.count:
        raise DistrError("%s %r does not exist: this job has ranks 0...%d" % (what, rank, t.count - 1))


def _tag_range(tag):
    if tag is None:
        return 0, _TAG_MAX
    if type(tag) is not int or not 0 <= tag <= _TAG_MAX:
        raise DistrError("tag %r is not allowed: user tags are 0 or more (negative tags belong to collectives)" % (tag,))
    return tag, tag


# ---------------------------------------------------------------- point to point


def send(dest, obj, tag=0):
    """Sends obj to rank dest. Returns once the message is handed to the kernel (never waits for recv)."""
    t = _world()
    if type(dest) is not int or not 0 <= dest < t.count:
        _check_rank(t, dest, "rank")
    if type(tag) is not int or tag < 0 or tag > _TAG_MAX:
        _tag_range(tag)
    encoding, element, fingerprint, payload = _codec.encode(obj)
    t.send(dest, tag, encoding, element, fingerprint, payload)


def recv_message(source=ANY, tag=ANY, kind=None, into=None):
    """Like recv, and also says where the message came from: (obj, source, tag)."""
    t = _world()
    if source is not None:
        _check_rank(t, source, "source rank")
    lo, hi = _tag_range(tag)
    msg = t.recv(source, lo, hi, into=into)
    if into is not None:
        return _filled(msg, into, kind), msg.source, msg.tag
    return _codec.decode(msg, kind), msg.source, msg.tag


def recv(source=ANY, tag=ANY, kind=None, into=None):
    """The next message from source (a rank or ANY) with tag (a tag or ANY), decoded.

    kind: what to expect (see the module doc); into: a writable buffer (bytearray, array.array, numpy
    array) that a raw or numeric-array message is read straight into; it is returned.
    Raises PeerExited when the source has exited with nothing pending, JobAborted, DistrError.
    """
    return recv_message(source, tag, kind, into)[0]


def _filled(msg, into, kind):
    if msg.encoding in (_codec.RAW, _codec.NUMERIC):
        view = memoryview(into)
        wanted = _codec.element_code_of_format(view.format, view.itemsize)
        if msg.encoding == _codec.NUMERIC and wanted is not None and view.format not in ("B", "b", "c"):
            same = {3: 4, 4: 3, 8: 9, 9: 8}
            if wanted != msg.element and same.get(wanted) != msg.element:
                raise DistrError("rank %d sent %s (tag %d), but recv's buffer holds %s" % (
                    msg.source, _codec.describe_message(msg), msg.tag, _codec.ELEMENTS[wanted][0]))
        return into
    raise DistrError("rank %d sent %s (tag %d); recv(into=) takes raw bytes or numeric arrays" % (
        msg.source, _codec.describe_message(msg), msg.tag))


def probe(source=ANY, tag=ANY, block=True):
    """(source, tag, byte length) of the next matching message, left queued; None when block=False and there is none."""
    t = _world()
    if source is not None:
        _check_rank(t, source, "source rank")
    lo, hi = _tag_range(tag)
    msg = t.probe(source, lo, hi, block=block)
    return None if msg is None else (msg.source, msg.tag, msg.length)


# ---------------------------------------------------------------- collectives (every rank calls them in the same order)


def barrier():
    """Waits until every rank has called barrier."""
    _collectives.barrier(_world_group())


def bcast(obj, root=0):
    """The root's obj, on every rank (other ranks' obj is ignored)."""
    return _collectives.bcast(_world_group(), obj, root)


def scatter(objs, root=0):
    """The root passes one value per rank (in rank order); each rank gets its own."""
    return _collectives.scatter(_world_group(), objs, root)


def gather(obj, root=0):
    """Every rank's obj in rank order at the root; None elsewhere."""
    return _collectives.gather(_world_group(), obj, root)


def allgather(obj):
    """Every rank's obj in rank order, on every rank."""
    return _collectives.allgather(_world_group(), obj)


def alltoall(objs):
    """Each rank passes one value per rank; rank r gets every rank's objs[r], in rank order."""
    return _collectives.alltoall(_world_group(), objs)


def reduce(obj, op=SUM, root=0):
    """Every rank's obj combined with op (SUM, PROD, MIN, MAX or any f(a, b)) at the root; None elsewhere."""
    return _collectives.reduce(_world_group(), obj, op, root)


def allreduce(obj, op=SUM):
    """Every rank's obj combined with op, on every rank."""
    return _collectives.allreduce(_world_group(), obj, op)


def scan(obj, op=SUM):
    """The combination of the objs of ranks 0...node_id (inclusive prefix)."""
    return _collectives.scan(_world_group(), obj, op)


def exscan(obj, op=SUM):
    """The combination of the objs of ranks 0...node_id - 1 (None on rank 0)."""
    return _collectives.exscan(_world_group(), obj, op)


# ---------------------------------------------------------------- the first client's API


class Node:
    """The first Python client's API, kept working:

        node = Node.join()
        node.send("hello", to=(node.id + 1) % node.count)
        text = node.recv(source=(node.id - 1) % node.count, kind=str)
        node.leave()
    """

    _current = None

    def __init__(self):
        t = _world()
        self.id = t.id
        self.count = t.count
        self.job_id = t.job_id

    @classmethod
    def join(cls):
        if cls._current is None:
            cls._current = cls()
        return cls._current

    def send(self, value, to, tag=0):
        send(to, value, tag)

    def recv(self, source=ANY, tag=ANY, kind=None):
        return recv(source, tag, kind)

    def recv_message(self, source=ANY, tag=ANY, kind=None):
        return recv_message(source, tag, kind)

    def leave(self):
        """Closes this rank's outgoing connections (everything sent is already in the kernel)."""
        _world().close()
