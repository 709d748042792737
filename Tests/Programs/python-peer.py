# The Python side of distr-check's mixed-language scenarios (Tests/Programs/distr-check/main.swift):
#   python3 python-peer.py            rank 1 of "python-peer": values both ways with Swift rank 0
#   python3 python-peer.py collectives  the odd ranks of "python-collectives"
import array
import struct
import sys

import distr
from distr import _codec, _transport


def expect(condition, what):
    if not condition:
        raise AssertionError("rank %d: %s" % (distr.node_id, what))


def peer():
    expect(distr.recv(0, kind=str) == "hello from swift", "String")
    expect(distr.recv(0) == [1.5, 2.5], "[Double] arrives as a list")
    expect(distr.recv(0, tag=3, kind=int) == 42, "Int")
    expect(distr.recv(0) is True, "Bool")
    expect(distr.recv(0, kind=float) == 0.5, "Float read as float")
    expect(distr.recv(0) == [1, -2], "[Int32] arrives as a list")
    expect(distr.recv(0) == {"a": 1, "b": 2}, "[String: Int]")
    expect(distr.recv(0, kind=[[int]]) == [[1, 2], [3]], "[[Int]]")
    expect(distr.recv(0) == ["x", "y"], "[String]")
    expect(distr.recv(0) == [True, False], "[Bool]")
    expect(distr.recv(0) == {1: "one"}, "[Int: String]")
    expect(distr.recv(0) == {"k": [1.5]}, "[String: [Double]]")
    expect(distr.recv(0) == b"\x00\xff\x07", "bytes")
    expect(distr.recv(0) == [], "empty [Int]")
    try:
        distr.recv(0)
        raise AssertionError("a Swift struct decoded without kind=")
    except distr.DistrError as error:
        expect("rank 0 sent a Swift value of a type distr cannot name (tag 0" in str(error) and "pass kind=" in str(error), str(error))
    expect(distr.recv(0, kind=(int, str, [float])) == (4, "q", []), "a Swift struct read with kind=")

    distr.send(0, "hello from python")
    distr.send(0, array.array("i", [1, -2, 3]))
    distr.send(0, 0.25, tag=5)
    distr.send(0, ["a", "b"])
    distr.send(0, -7)
    distr.send(0, True)
    distr.send(0, [1, 2, 3])
    distr.send(0, [1.5, -0.5])
    distr.send(0, {"a": 1, "b": 2})
    distr.send(0, {1: "one"})
    distr.send(0, [[1, 2], [3]])
    distr.send(0, {"k": [0.5]})
    distr.send(0, [True, False])
    distr.send(0, b"\x01\x02\x03")
    distr.send(0, [])
    distr.send(0, [])
    numpy = _codec.numpy_module()
    distr.send(0, numpy.arange(3.0) if numpy is not None else array.array("d", [0, 1, 2]))
    distr.send(0, (1, "a tuple has no Swift type"))
    distr.send(0, "after the pickle")
    # A header with an unknown encoding, written straight onto the connection to rank 0.
    sock = _transport.world()._links[0]
    sock.setblocking(True)
    sock.sendall(struct.pack(">BBBBIqQ", 1, 9, 0, 0, 0, 0, 0))
    distr.recv(0, tag=9)


def awkward(rank, index):
    """distr-check's awkward(rank:index:): sums of these round differently in different orders."""
    return float((index * 7919 + rank * 104729) % 1000003) / 7.0 * (1e8 if (index + rank) % 3 == 0 else 1.0)


def collectives():
    me, n = distr.node_id, distr.n_node
    distr.barrier()
    expect(distr.bcast(7 if me == 1 else None, root=1) == 7, "bcast of an Int from rank 1")
    expect(distr.bcast(None, root=0) == [0.5, 1.5], "bcast of [Double] from Swift")
    expect(distr.reduce(me + 1, root=0) is None, "reduce of Int")
    sums = distr.reduce([float(me), 1.0], distr.SUM, root=1)
    expect(sums == ([float(n * (n - 1) // 2), float(n)] if me == 1 else None), "reduce of [Double] at rank 1: %r" % (sums,))
    expect(distr.allreduce(me, distr.MAX) == n - 1, "allreduce max")
    size = 4096 * n + 3
    expect(distr.allreduce([float(me + 1)] * size) == [float(n * (n + 1) // 2)] * size, "ring allreduce")
    expect(distr.allreduce([me, -me], distr.MIN) == [0, -(n - 1)], "allreduce min of [Int]")
    # The same order-sensitive sum as distr-check's expectSameSumEverywhere: the same bits everywhere.
    size = 4096 * n + 5
    total = distr.allreduce([awkward(me, i) for i in range(size)])
    reference = distr.bcast(None, root=0)
    expect(total == reference, "ring allreduce: the same doubles as rank 0")
    expect(all(abs(total[i] - sum(awkward(r, i) for r in range(n))) <= 1e-12 * abs(total[i]) for i in range(size)), "ring allreduce sum")
    words = distr.gather("r%d" % me, root=1)
    expect(words == (["r%d" % r for r in range(n)] if me == 1 else None), "gather of str at rank 1")
    expect(distr.gather(me, root=0) is None, "gather of int")
    expect(distr.allgather(me * 0.5) == [r * 0.5 for r in range(n)], "allgather of float")
    expect(distr.allgather(["x%d" % me]) == [["x%d" % r] for r in range(n)], "allgather of [str]")
    expect(distr.scatter(None, root=0) == "s%d" % me, "scatter of str from Swift")
    expect(distr.scatter([r * 10 for r in range(n)] if me == 1 else None, root=1) == me * 10, "scatter of int from rank 1")
    large = distr.bcast(None, root=0)
    expect(list(large) == [i * 0.5 for i in range(100000)], "bcast of 100000 doubles from Swift")
    distr.barrier()


if len(sys.argv) > 1 and sys.argv[1] == "collectives":
    collectives()
    print("ok python-collectives", flush=True)
else:
    peer()
    print("ok python-peer", flush=True)
