"""Collective operations, written once over a Group (docs/messages.md §5).

A Group has `rank`, `size`, `send(dest, value, tag)`, `recv(source, tag) -> value` (ranks are the
group's own) and `next_collective_tags() -> (t, t - 1)`. The distr module's world group sends
values in the Swift-compatible encodings on the Swift tags, so Python and Swift ranks of one job
can call the same collective together; the mpi4py layer's communicators pickle, on tags of their
own context. The algorithms are those of Swift's Node+Collectives:

- barrier: dissemination (send True to rank + d, receive from rank - d, d = 1, 2, 4, ...)
- bcast, reduce, gather, scatter: binomial trees over the rank relative to the root
- allgather: gather to 0 (t), bcast from 0 (t - 1); allreduce: reduce to 0 (t), bcast (t - 1), or,
  for SUM/PROD/MIN/MAX on numeric arrays of at least 4096 elements per rank, a ring
  reduce-scatter (t) then ring all-gather (t - 1), chunk i = elements [i*L//n, (i+1)*L//n)
- alltoall (no Swift counterpart yet): pairwise exchange, step s = 1..n-1 sends to rank + s and
  receives from rank - s, one tag
- scan / exscan (no Swift counterpart yet): recursive doubling (Hillis-Steele), log rounds on one
  tag: in round d a rank sends its partial to rank + d and combines the partial of rank - d in front
  of its own, so a non-commutative operation is applied in rank order.
"""

import array
import operator

from ._codec import numpy_module
from ._transport import DistrError

__all__ = ["Op", "SUM", "PROD", "MIN", "MAX", "combine", "barrier", "bcast", "reduce", "allreduce", "gather",
           "allgather", "scatter", "alltoall", "scan", "exscan"]

RING_THRESHOLD = 4096


class Op:
    """A built-in reduction: plain on numbers, element by element on lists, array.array and numpy arrays."""

    __slots__ = ("name", "scalar", "ufunc")

    def __init__(self, name, scalar, ufunc):
        self.name = name
        self.scalar = scalar
        self.ufunc = ufunc

    def __call__(self, a, b):
        return combine(self, a, b)

    def __repr__(self):
        return "distr." + self.name


SUM = Op("SUM", operator.add, "add")
PROD = Op("PROD", operator.mul, "multiply")
MIN = Op("MIN", min, "minimum")
MAX = Op("MAX", max, "maximum")


def _ndarray():
    np = numpy_module()
    return None if np is None else np.ndarray


def _like(value, model):
    """`value` (a list, array.array or ndarray of numbers) as the container type of `model`."""
    nd = _ndarray()
    if nd is not None and isinstance(model, nd):
        if isinstance(value, nd) and value.dtype == model.dtype:
            return value
        return numpy_module().asarray(value, dtype=model.dtype)
    if isinstance(model, array.array):
        if isinstance(value, array.array) and value.typecode == model.typecode:
            return value
        return array.array(model.typecode, value)
    if isinstance(model, list) and not isinstance(value, list):
        return list(value)
    return value


def combine(op, a, b):
    """op(a, b): a callable is called; a built-in Op works element by element on arrays (the longer
    array's extra elements are kept, like Swift's Reduction on arrays) and plainly on numbers."""
    if not isinstance(op, Op):
        return op(a, b)
    nd = _ndarray()
    if nd is not None and (isinstance(a, nd) or isinstance(b, nd)):
        if not isinstance(a, nd):
            a = _like(a, b)
        b = _like(b, a)
        if a.shape == b.shape:
            return getattr(numpy_module(), op.ufunc)(a, b)
        short, long_ = (a, b) if len(a) < len(b) else (b, a)
        out = long_.copy()
        out[:len(short)] = getattr(numpy_module(), op.ufunc)(a[:len(short)], b[:len(short)])
        return out
    if isinstance(a, (list, array.array)) or isinstance(b, (list, array.array)):
        model = a if isinstance(a, (list, array.array)) else b
        f = op.scalar
        n = min(len(a), len(b))
        merged = [f(x, y) for x, y in zip(a, b)]
        merged.extend((a if len(a) > n else b)[n:])
        return array.array(model.typecode, merged) if isinstance(model, array.array) else merged
    return op.scalar(a, b)


def _numeric_length(value):
    """The element count when `value` travels as a numeric array (ring-eligible), else None."""
    nd = _ndarray()
    if nd is not None and isinstance(value, nd):
        return len(value) if value.ndim == 1 and value.dtype.kind in "iuf" else None
    if isinstance(value, array.array):
        return len(value) if value.typecode not in "uw" else None
    if isinstance(value, list) and value:
        first = type(value[0])
        if (first is float or first is int) and all(type(x) is first for x in value):
            return len(value)
    return None


# ---------------------------------------------------------------- the algorithms


def barrier(g):
    t, _ = g.next_collective_tags()
    n, me = g.size, g.rank
    d = 1
    while d < n:
        g.send((me + d) % n, True, t)
        g.recv((me - d) % n, t)
        d *= 2


def bcast(g, obj, root=0):
    _check_root(g, root)
    t, _ = g.next_collective_tags()
    return _bcast(g, obj, root, t)


def _bcast(g, obj, root, t):
    n = g.size
    me = (g.rank - root) % n
    mask = 1
    while mask < n:
        if me & mask:
            obj = g.recv((me - mask + root) % n, t)
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:
        if me + mask < n:
            g.send((me + mask + root) % n, obj, t)
        mask >>= 1
    return obj


def reduce(g, obj, op=SUM, root=0):
    _check_root(g, root)
    t, _ = g.next_collective_tags()
    return _reduce(g, obj, op, root, t)


def _reduce(g, obj, op, root, t):
    n = g.size
    me = (g.rank - root) % n
    acc = obj
    mask = 1
    while mask < n:
        if me & mask == 0:
            child = me | mask
            if child < n:
                acc = combine(op, acc, g.recv((child + root) % n, t))
        else:
            g.send(((me & ~mask) + root) % n, acc, t)
            return None
        mask <<= 1
    return acc


def allreduce(g, obj, op=SUM):
    t, t2 = g.next_collective_tags()
    if isinstance(op, Op) and g.size > 1:
        length = _numeric_length(obj)
        if length is not None and length >= RING_THRESHOLD * g.size:
            return _ring_allreduce(g, obj, op, t, t2, length)
    return _bcast(g, _reduce(g, obj, op, 0, t), 0, t2)


def _ring_allreduce(g, value, op, t, t2, total):
    n, me = g.size, g.rank
    bounds = [i * total // n for i in range(n + 1)]
    chunks = [value[bounds[i]:bounds[i + 1]] for i in range(n)]
    nxt, prv = (me + 1) % n, (me - 1) % n

    def take(index, tag):
        theirs = g.recv(prv, tag)
        expected = bounds[index + 1] - bounds[index]
        length = len(theirs) if isinstance(theirs, (list, array.array)) or _numeric_length(theirs) is not None else None
        if length != expected:
            raise DistrError("rank %s sent a chunk of %s elements in allreduce where chunk %d has %d "
                             "(do all ranks call the same collectives in the same order, with arrays of one length?)"
                             % (_name(g, prv), length, index, expected))
        return _like(theirs, value)

    nd = _ndarray()
    if nd is not None and isinstance(value, nd):
        # numpy: combine straight into the result's chunk (own op received, the order above) and
        # copy what the all-gather brings into place, instead of new arrays and a concatenation.
        np = numpy_module()
        ufunc = getattr(np, op.ufunc)
        result = np.empty_like(value)
        for step in range(n - 1):
            sending = (me - step) % n
            receiving = (me - step - 1) % n
            g.send(nxt, chunks[sending], t)
            part = result[bounds[receiving]:bounds[receiving + 1]]
            ufunc(chunks[receiving], take(receiving, t), out=part)
            chunks[receiving] = part
        for step in range(n - 1):
            sending = (me + 1 - step) % n
            receiving = (me - step) % n
            g.send(nxt, chunks[sending], t2)
            part = result[bounds[receiving]:bounds[receiving + 1]]
            part[:] = take(receiving, t2)
            chunks[receiving] = part
        return result
    for step in range(n - 1):
        sending = (me - step) % n
        receiving = (me - step - 1) % n
        g.send(nxt, chunks[sending], t)
        chunks[receiving] = combine(op, chunks[receiving], take(receiving, t))
    for step in range(n - 1):
        sending = (me + 1 - step) % n
        receiving = (me - step) % n
        g.send(nxt, chunks[sending], t2)
        chunks[receiving] = take(receiving, t2)
    out = chunks[0][:0]
    for chunk in chunks:
        out += chunk
    return out


def gather(g, obj, root=0):
    _check_root(g, root)
    t, _ = g.next_collective_tags()
    return _gather(g, obj, root, t)


def _gather(g, obj, root, t):
    n = g.size
    me = (g.rank - root) % n
    parts = [obj]
    mask = 1
    while mask < n:
        if me & mask == 0:
            child = me | mask
            if child < n:
                sender = (child + root) % n
                theirs = g.recv(sender, t)
                expected = min(mask, n - child)
                if not isinstance(theirs, list) or len(theirs) != expected:
                    raise DistrError(
                        "rank %s sent %s to gather where its part of the tree has %d ranks "
                        "(do all ranks call the same collectives in the same order?)"
                        % (_name(g, sender), _count(theirs), expected))
                parts += theirs
        else:
            g.send(((me & ~mask) + root) % n, parts, t)
            return None
        mask <<= 1
    return [parts[(i - root) % n] for i in range(n)]


def allgather(g, obj):
    t, t2 = g.next_collective_tags()
    everything = _bcast(g, _gather(g, obj, 0, t), 0, t2)
    if not isinstance(everything, list) or len(everything) != g.size:
        raise DistrError("allgather received %s where the group has %d ranks" % (_count(everything), g.size))
    return everything


def scatter(g, objs, root=0):
    _check_root(g, root)
    t, _ = g.next_collective_tags()
    n = g.size
    me = (g.rank - root) % n
    mask = 1
    if me == 0:
        if objs is None or len(objs) != n:
            raise DistrError("scatter: the root must pass exactly %d values, one per rank" % n)
        mine = [objs[(i + root) % n] for i in range(n)]
        while mask < n:
            mask <<= 1
    else:
        while me & mask == 0:
            mask <<= 1
        sender = (me - mask + root) % n
        mine = g.recv(sender, t)
        expected = min(mask, n - me)
        if not isinstance(mine, list) or len(mine) != expected:
            raise DistrError(
                "rank %s sent %s to scatter where this rank's part of the tree has %d ranks "
                "(do all ranks call the same collectives in the same order?)" % (_name(g, sender), _count(mine), expected))
    mask >>= 1
    while mask > 0:
        child = me + mask
        if child < n and mask < len(mine):
            g.send((child + root) % n, mine[mask:min(len(mine), 2 * mask)], t)
        mask >>= 1
    return mine[0]


def alltoall(g, objs):
    n, me = g.size, g.rank
    if objs is None or len(objs) != n:
        raise DistrError("alltoall: pass exactly %d values, one per rank" % n)
    t, _ = g.next_collective_tags()
    out = [None] * n
    out[me] = objs[me]
    for s in range(1, n):
        g.send((me + s) % n, objs[(me + s) % n], t)
        out[(me - s) % n] = g.recv((me - s) % n, t)
    return out


def scan(g, obj, op=SUM):
    return _scan(g, obj, op)[0]


def exscan(g, obj, op=SUM):
    """The combination of the values of the ranks below this one (None on rank 0)."""
    return _scan(g, obj, op)[1]


def _scan(g, obj, op):
    t, _ = g.next_collective_tags()
    n, me = g.size, g.rank
    inclusive, exclusive = obj, None
    d = 1
    while d < n:
        if me + d < n:
            g.send(me + d, inclusive, t)
        if me - d >= 0:
            theirs = g.recv(me - d, t)
            inclusive = combine(op, theirs, inclusive)
            exclusive = theirs if exclusive is None else combine(op, theirs, exclusive)
        d *= 2
    return inclusive, exclusive


def _check_root(g, root):
    if not (isinstance(root, int) and 0 <= root < g.size):
        raise DistrError("root %r does not exist: this group has ranks 0...%d" % (root, g.size - 1))


def _name(g, rank):
    world = getattr(g, "world_rank", None)
    return str(world(rank)) if world is not None else str(rank)


def _count(value):
    return "%d values" % len(value) if isinstance(value, list) else "a %s" % type(value).__name__
