# The distr Python module's end-to-end checks (Tests/EndToEndTests/PythonModuleTests.swift runs
# them): python3 python-check.py SCENARIO. Every rank prints "ok SCENARIO" when all checks passed.
import array
import math
import os
import signal
import sys

import distr


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def expect(condition, what):
    if not condition:
        raise AssertionError("rank %d: %s" % (distr.node_id, what))


def expect_error(kind, call, *needles):
    """call() raises `kind`, whose message holds every needle; returns the error."""
    try:
        call()
    except kind as error:
        for needle in needles:
            expect(needle in str(error), "%r should mention %r" % (str(error), needle))
        return error
    raise AssertionError("rank %d: %s did not raise %s" % (distr.node_id, call, kind.__name__))


def numpy_or_none():
    from distr import _codec
    return _codec.numpy_module()


def same(a, b):
    np = numpy_or_none()
    if np is not None and isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------- scenarios


def api():
    me, n = distr.node_id, distr.n_node
    expect(isinstance(me, int) and isinstance(n, int) and 0 <= me < n, "node_id and n_node")
    nxt, prv = (me + 1) % n, (me - 1) % n
    distr.send(me, "to myself", tag=3)
    expect(distr.recv(me, 3) == "to myself", "send to self")
    # Tags select; messages of one sender keep their order within a tag.
    distr.send(nxt, "first", tag=1)
    distr.send(nxt, "second", tag=2)
    distr.send(nxt, "third", tag=1)
    expect(distr.recv(prv, tag=2) == "second", "receive by tag")
    expect(distr.recv_message(prv, tag=distr.ANY) == ("first", prv, 1), "recv_message")
    expect(distr.recv_message(distr.ANY, 1) == ("third", prv, 1), "any source")
    # probe leaves the message queued.
    distr.send(nxt, [1, 2, 3], tag=7)
    expect(distr.probe(prv, 7) == (prv, 7, 24), "probe")
    expect(distr.recv(prv, 7, kind=[int]) == [1, 2, 3], "recv after probe")
    expect(distr.probe(prv, 7, block=False) is None, "nothing queued")
    # into=: raw bytes and numeric arrays land in the caller's buffer.
    distr.send(nxt, bytes(range(200)), tag=4)
    buffer = bytearray(256)
    expect(distr.recv(prv, 4, into=buffer) is buffer and buffer[:200] == bytes(range(200)), "recv into bytearray")
    distr.send(nxt, array.array("d", [0.5] * 50000), tag=5)
    target = array.array("d", [0.0] * 50000)
    distr.recv(prv, 5, into=target)
    expect(target[0] == 0.5 and target[-1] == 0.5, "recv into array.array (large: read straight in)")
    distr.send(nxt, array.array("d", [1.0] * 10), tag=6)
    expect_error(distr.DistrError, lambda: distr.recv(prv, 6, into=bytearray(40)), "sent 80 bytes; the receive buffer holds 40")
    distr.send(nxt, array.array("i", [1, 2]), tag=6)
    expect_error(distr.DistrError, lambda: distr.recv(prv, 6, into=array.array("d", [0.0] * 4)),
                 "rank %d sent [Int32] (tag 6), but recv's buffer holds Double" % prv)
    # Bad arguments.
    expect_error(distr.DistrError, lambda: distr.send(n, "x"), "rank %d does not exist: this job has ranks 0...%d" % (n, n - 1))
    expect_error(distr.DistrError, lambda: distr.send(nxt, "x", tag=-1), "tag -1 is not allowed")
    expect_error(distr.DistrError, lambda: distr.recv(-1), "source rank -1 does not exist")
    # The first client's API.
    node = distr.Node.join()
    expect((node.id, node.count) == (me, n) and node.job_id, "Node identity")
    node.send("via Node", to=nxt, tag=8)
    expect(node.recv(source=prv, tag=8, kind=str) == "via Node", "Node.recv")
    distr.barrier()
    node.leave()


SAMPLES = [
    b"raw", b"", bytearray(b"\x00\xffbytearray"), memoryview(b"view"), b"x" * (3 << 20),
    "text", "", "h\u00e9llo \u2603", "\ud800 lone surrogate",
    0, -7, 2 ** 63 - 1, -2 ** 63, 2 ** 64, 1.5, -0.0, float("inf"), float("nan"), True, False,
    [1, 2, 3], [1.5, -2.5], ["a", "bc"], [True, False], [[1, 2], [], [3]], [["a"], ["b", "c"]], [[1.5], [2.0]],
    {"a": 1, "b": 2}, {1: "one", 2: "two"}, {"k": [1.0, 2.0], "l": []}, {"x": {"y": True}}, [{"a": "b"}],
    [], (1, "tuple"), None, {}, set([1, 2]), [1, "mixed"], [1, 2.5], [2 ** 70], [[[[1]]]], Point(1, 2),
    array.array("d", [1.5, 2.5]), array.array("f", [0.5]), array.array("q", [-(2 ** 62), 5]), array.array("i", [-1, 2]),
    array.array("h", [-3]), array.array("b", [-4]), array.array("Q", [2 ** 63]), array.array("I", [7]),
    array.array("H", [8]), array.array("B", [9]), array.array("d", []), array.array("d", [0.25] * 100000),
]


def expected_after_travel(value):
    """What a Python receiver rebuilds from a value (bytes-likes arrive as bytes)."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def encodings():
    me, n = distr.node_id, distr.n_node
    nxt, prv = (me + 1) % n, (me - 1) % n
    np = numpy_or_none()
    samples = list(SAMPLES)
    if np is not None:
        samples += [np.arange(5, dtype=np.int64), np.linspace(0, 1, 7), np.arange(4, dtype=np.float32),
                    np.arange(3, dtype=np.int32), np.arange(3, dtype=np.uint8), np.arange(3, dtype=np.int16),
                    np.arange(3, dtype=np.uint64), np.arange(1 << 20, dtype=np.float64),
                    np.arange(6.0).reshape(2, 3), np.array([True, False]), np.arange(3, dtype=">i4")]
    for tag, value in enumerate(samples):
        distr.send(nxt, value, tag=tag)
    for tag, value in enumerate(samples):
        got = distr.recv(prv, tag)
        want = expected_after_travel(value)
        if np is not None and isinstance(value, np.ndarray) and value.dtype.byteorder == ">":
            want = value.astype("<i4")
        expect(same(got, want), "tag %d: sent %r, received %r" % (tag, type(value).__name__, type(got).__name__))
    # How each travels: raw, Codable, numeric, pickle (the module doc's table).
    from distr import _codec
    travels = [(b"raw", 0), (bytearray(b"b"), 0), ("text", 1), (-2 ** 63, 1), (2 ** 64, 3), (1.5, 1), (True, 1),
               ([1, 2], 2), ([1.5], 2), (["a"], 1), ([[1], []], 1), ({"a": 1}, 1), ({1: "x"}, 1), ([], 1), ((1,), 3),
               (None, 3), ({}, 3), ([1, "a"], 3), ([1, 2.5], 3), ([[[[1]]]], 3), (Point(0, 0), 3),
               (array.array("i", [1]), 2)]
    for value, encoding in travels:
        got = _codec.encode(value)[0]
        expect(got == encoding, "%r travels as encoding %d, not %d" % (value, encoding, got))
    # kind=bytes gives the payload of any message.
    distr.send(nxt, "abc", tag=1000)
    expect(distr.recv(prv, 1000, kind=bytes) == b"\x03\x00\x00\x00abc", "kind=bytes")
    distr.barrier()


def pure():
    """DISTR_NUMPY=0: numeric arrays arrive as array.array or list, and numpy is never imported."""
    me, n = distr.node_id, distr.n_node
    nxt, prv = (me + 1) % n, (me - 1) % n
    from distr import _codec, _transport
    expect(_codec.numpy_module() is None, "DISTR_NUMPY=0 hides numpy")
    encodings()
    # A numpy array sent by a rank that has numpy arrives as array.array.
    _transport.world().send(nxt, 9, 2, 1, _codec.PY_NDARRAY, array.array("d", [1.0, 2.0]))
    got = distr.recv(prv, 9)
    expect(isinstance(got, array.array) and got.typecode == "d" and list(got) == [1.0, 2.0], "ndarray marker without numpy")
    expect(distr.allreduce(array.array("d", [1.0] * (4096 * n))) == array.array("d", [float(n)] * (4096 * n)), "ring on array.array")
    expect("numpy" not in sys.modules, "numpy was imported")


def collectives():
    me, n = distr.node_id, distr.n_node
    distr.barrier()
    for root in range(n):
        expect(distr.bcast({"root": root} if me == root else None, root=root) == {"root": root}, "bcast from %d" % root)
        expect(distr.gather((me, "v"), root=root) == ([(r, "v") for r in range(n)] if me == root else None), "gather at %d" % root)
        values = [r * 10 for r in range(n)] if me == root else None
        expect(distr.scatter(values, root=root) == me * 10, "scatter from %d" % root)
        expect(distr.reduce(me + 1, distr.PROD, root=root) == (math.factorial(n) if me == root else None), "reduce at %d" % root)
    expect(distr.allgather(str(me)) == [str(r) for r in range(n)], "allgather")
    expect(distr.allgather([me]) == [[r] for r in range(n)], "allgather of lists")
    expect(distr.alltoall(["%d->%d" % (me, r) for r in range(n)]) == ["%d->%d" % (r, me) for r in range(n)], "alltoall")
    ops = {distr.SUM: sum, distr.PROD: math.prod, distr.MIN: min, distr.MAX: max}
    contributions = [r + 2 for r in range(n)]
    for op, fold in ops.items():
        expect(distr.allreduce(me + 2, op) == fold(contributions), "allreduce %r of ints" % op)
        expect(distr.allreduce(float(me + 2), op) == float(fold(contributions)), "allreduce %r of floats" % op)
        expect(distr.scan(me + 2, op) == fold(contributions[:me + 1]), "scan %r" % op)
        expect(distr.exscan(me + 2, op) == (fold(contributions[:me]) if me else None), "exscan %r" % op)
        small = distr.allreduce([me + 2, -(me + 2)], op)
        expect(small == [fold(contributions), fold([-c for c in contributions])], "allreduce %r of a list: %r" % (op, small))
        # The ring path: at least 4096 elements per rank.
        size = 4096 * n + 5
        big = distr.allreduce(array.array("d", [float(me + 2)] * size), op)
        expect(isinstance(big, array.array) and big == array.array("d", [float(fold(contributions))] * size), "ring %r" % op)
        biglist = distr.allreduce([me + 2] * size, op)
        expect(biglist == [fold(contributions)] * size, "ring %r on a list" % op)
    # A callable: string concatenation is not commutative, so the order shows.
    concat = lambda a, b: a + b  # noqa: E731
    expect(distr.reduce(str(me), concat) == ("".join(str(r) for r in range(n)) if me == 0 else None), "reduce with a callable")
    expect(distr.allreduce(str(me), concat) == "".join(str(r) for r in range(n)), "allreduce with a callable")
    expect(distr.scan(str(me), concat) == "".join(str(r) for r in range(me + 1)), "scan with a callable")
    np = numpy_or_none()
    if np is not None:
        vector = distr.allreduce(np.full(3, me + 1.0))
        expect(isinstance(vector, np.ndarray) and list(vector) == [n * (n + 1) / 2] * 3, "allreduce of a small ndarray")
        ring = distr.allreduce(np.arange(4096 * n, dtype=np.int64) * (me + 1), distr.MAX)
        expect(isinstance(ring, np.ndarray) and bool((ring == np.arange(4096 * n) * n).all()), "ring on an ndarray")
        if n > 1:
            # Not a multiple of n, order-sensitive float sums: the same doubles on every rank.
            size = 4096 * n + 3
            values = np.arange(size, dtype=np.float64) / 7.0 * (1e8 if me % 2 else 1.0) + me
            total = distr.allreduce(values)
            expected = sum(np.arange(size, dtype=np.float64) / 7.0 * (1e8 if r % 2 else 1.0) + r for r in range(n))
            expect(total.dtype == np.float64 and total.shape == (size,), "ring of floats on an ndarray: %r" % (total,))
            expect(bool((np.abs(total - expected) <= 1e-12 * np.abs(expected)).all()), "ring of floats on an ndarray: the sum")
            expect(distr.allgather(total.tobytes()) == [total.tobytes()] * n, "ring of floats on an ndarray: the same bits everywhere")
            smallest = distr.allreduce(np.arange(size, dtype=np.float32) - me, distr.MIN)
            expect(bool((smallest == np.arange(size, dtype=np.float32) - (n - 1)).all()), "ring min on a float32 ndarray")
    expect_error(distr.DistrError, lambda: distr.bcast(1, root=n), "root %d does not exist" % n)
    distr.barrier()


def mismatch():
    me = distr.node_id
    if me == 0:
        distr.send(1, 2.5)
        distr.send(1, (1, 2), tag=1)
        distr.send(1, b"raw", tag=2)
        distr.send(1, [1, 2], tag=3)
        distr.send(1, {"a": 1}, tag=4)
    elif me == 1:
        # The case: a float received with kind=str raises (it used to give '').
        expect_error(distr.DistrError, lambda: distr.recv(0, kind=str), "rank 0 sent Double (tag 0), but recv asked for str")
        expect_error(distr.DistrError, lambda: distr.recv(0, 1, kind=str), "rank 0 sent a pickled tuple (tag 1), but recv asked for str")
        expect_error(distr.DistrError, lambda: distr.recv(0, 2, kind=int), "rank 0 sent raw bytes (tag 2), but recv asked for int")
        expect_error(distr.DistrError, lambda: distr.recv(0, 3, kind=[str]), "rank 0 sent [Int] (tag 3), but recv asked for [str]")
        expect_error(distr.DistrError, lambda: distr.recv(0, 4, kind={str: str}),
                     "rank 0 sent [String: Int] (tag 4), but recv asked for {str: str}")
    distr.barrier()


def bigring():
    """Everyone sends 32 MiB to the next rank before anyone receives."""
    me, n = distr.node_id, distr.n_node
    size = 32 << 20
    np = numpy_or_none()
    if np is not None:
        distr.send((me + 1) % n, np.full(size // 8, float(me)))
        into = np.empty(size // 8)
        got = distr.recv((me - 1) % n, into=into)
        expect(got is into and into[0] == (me - 1) % n and into[-1] == (me - 1) % n, "32 MiB ndarray")
    distr.send((me + 1) % n, bytes([me]) * size)
    data = distr.recv((me - 1) % n)
    expect(len(data) == size and data[0] == (me - 1) % n and data[-1] == (me - 1) % n, "32 MiB of bytes")


def dead():
    me = distr.node_id
    if me == 1:
        distr.send(0, "last words")
        distr.recv(0, tag=1)  # rank 0 is about to wait for rank 1
        sys.exit(3)
    expect(distr.recv(1) == "last words", "a message sent before exit is delivered")
    distr.send(1, "go", tag=1)
    error = expect_error(distr.PeerExited, lambda: distr.recv(1), "rank 1 has exited (status 3)")
    expect((error.rank, error.status) == (1, 3), "PeerExited fields")
    if distr.n_node == 2:
        expect_error(distr.PeerExited, lambda: distr.recv(distr.ANY), "every other rank has exited")
    expect_error(distr.DistrError, lambda: distr.send(1, b"x" * (64 << 20)), "1")


def aborted():
    """Rank 1 fails; ranks 0 and 2 wait for each other (both alive) and get JobAborted."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    distr.barrier()
    if distr.node_id == 1:
        # Only once ranks 0 and 2 are out of the barrier: leaving it here says nothing about
        # them, and a rank still in it would be ended there, before the receive below.
        distr.recv(0, 8)
        distr.recv(2, 8)
        sys.exit(2)
    distr.send(1, "out of the barrier", 8)
    error = expect_error(distr.JobAborted, lambda: distr.recv(2 - distr.node_id, 9), "the job is being ended")
    print("aborted: %s" % error, flush=True)


def malformed():
    """Rank 1 writes a header with an unknown encoding on its connection to rank 0."""
    import struct
    from distr import _transport
    t = _transport.world()
    if distr.node_id == 1:
        distr.send(0, "before")
        sock = t._links[0]
        sock.setblocking(True)
        sock.sendall(struct.pack(">BBBBIqQ", 1, 9, 0, 0, 0, 0, 0))
        distr.recv(0, 5)
        return
    expect(distr.recv(1) == "before", "the message before the bad header is delivered")
    expect_error(distr.DistrError, lambda: distr.recv(1),
                 "rank 1 sent a malformed message header (unknown encoding 9); the connection from rank 1 was closed")
    distr.send(1, "done", tag=5)


def oversized():
    """DISTR_MAX_MESSAGE_BYTES=4096: rank 0 refuses rank 1's 8 KiB message, naming rank 1."""
    if distr.node_id == 1:
        distr.send(0, b"small")
        distr.send(0, b"x" * 8192)
        distr.recv(0, 5)
        return
    expect(distr.recv(1) == b"small", "the message under the limit")
    expect_error(distr.DistrError, lambda: distr.recv(1),
                 "rank 1 sent a message of 8192 bytes, over the limit of 4096 (DISTR_MAX_MESSAGE_BYTES); "
                 "the connection from rank 1 was closed")
    distr.send(1, "done", tag=5)


def transport():
    """The Transport API the mpi4py layer builds on: posted receives, test/wait/wait_any/cancel, members."""
    from distr import _transport
    import hashlib
    import hmac
    # The handshake's HMAC, made without hmac and hashlib: RFC 4231's case 2, then keys of
    # every length around SHA-256's 64-byte block against the hmac module.
    expect(_transport.hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex()
           == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "HMAC-SHA-256 of RFC 4231 case 2")
    for size in (0, 1, 32, 63, 64, 65, 131):
        key, data = os.urandom(size), os.urandom(3 * size + 1)
        expect(_transport.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest(), "HMAC with a %d-byte key" % size)
    t = _transport.world()
    me, n = t.id, t.count
    nxt, prv = (me + 1) % n, (me - 1) % n
    # Posted before the message arrives; posted receives are served in posting order, before recv.
    first = t.post(prv, 10, 10)
    second = t.post(None, 10, 10)
    large = t.post(prv, 11, 11, into=bytearray(1 << 21))
    expect(not t.test(first), "nothing arrived yet")
    distr.barrier()  # everyone has posted and tested before anyone sends
    t.send(nxt, 10, 0, 0, 0, b"one")
    t.send(nxt, 10, 0, 0, 0, b"two")
    t.send(nxt, 11, 0, 0, 0, b"L" * (1 << 21))
    expect(bytes(t.wait(first).payload) == b"one" and bytes(t.wait(second).payload) == b"two", "posting order")
    message = t.wait(large)
    expect(message.length == 1 << 21 and bytes(message.payload[-3:]) == b"LLL", "a large payload into a posted buffer")
    # Posted after arrival: complete at once.
    t.send(nxt, 12, 0, 0, 0, b"early")
    distr.barrier()  # rank prv's message with tag 12 has been sent; it may not have been read yet
    late = t.post(prv, 12, 12)
    expect(bytes(t.wait(late).payload) == b"early", "posted after the message came")
    # wait_any, cancel, tag ranges, non-blocking recv and probe.
    pending = [t.post(prv, 20, 20), t.post(prv, 21, 29)]
    distr.barrier()
    t.send(nxt, 25, 0, 0, 0, b"range")
    expect(t.wait_any(pending) == 1 and pending[1].message.tag == 25, "wait_any and a tag range")
    t.cancel(pending[0])
    distr.barrier()  # every rank cancelled before the message that the cancelled receive would have taken
    t.send(nxt, 20, 0, 0, 0, b"after cancel")
    expect(bytes(t.recv(prv, 20, 20).payload) == b"after cancel", "a cancelled receive takes nothing")
    expect(t.recv(prv, 30, 30, block=False) is None and t.probe(prv, 30, 30, block=False) is None, "nothing with tag 30")
    # members: an any-source receive limited to some ranks.
    t.send(me, 40, 1, 0, 0, b"self")
    expect(t.recv(None, 40, 40, members=[r for r in range(n) if r != me], block=False) is None, "members leave out self")
    expect(bytes(t.recv(None, 40, 40, members=[me]).payload) == b"self", "members")
    # A negative (collective) tag range is separate from user tags.
    t.send(nxt, -5, 0, 0, 0, b"collective")
    expect(t.recv(prv, 0, 2 ** 31 - 1, block=False) is None, "user tags do not see collective tags")
    expect(bytes(t.recv(prv, -5, -5).payload) == b"collective", "collective tag")
    distr.barrier()


def crash():
    if distr.node_id == 1:
        raise ValueError("boom in rank 1")
    distr.recv(1)


SCENARIOS = {f.__name__: f for f in [api, transport, encodings, pure, collectives, mismatch, bigring, dead, aborted, malformed,
                                     oversized, crash]}

if __name__ == "__main__":
    scenario = sys.argv[1]
    SCENARIOS[scenario]()
    print("ok %s" % scenario, flush=True)
    if os.environ.get("DISTR_CHECK_SHOW_NUMPY"):
        print("numpy: %s" % ("numpy" in sys.modules), flush=True)
