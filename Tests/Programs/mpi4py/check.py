"""Every call of distr's mpi4py subset, printing results that must be the same under mpirun with
the real mpi4py and under distr-master (Mpi4pyTests compares the sorted lines). Run it with 4 ranks
(any number >= 2 works). Uses numpy for the numpy part only when it is importable and DISTR_NUMPY
is not "0", so the pure-Python buffer paths are checked too.
"""
import array
import os
import pickle
import socket
import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
left, right = (rank - 1) % size, (rank + 1) % size

np = None
if os.environ.get("DISTR_NUMPY") != "0":
    try:
        import numpy as np
    except ImportError:
        pass


def out(*parts):
    # One write per line, flushed: mpirun interleaves the ranks' output otherwise.
    sys.stdout.write(" ".join(["rank %d:" % rank] + [str(p) for p in parts]) + "\n")
    sys.stdout.flush()


def expect(condition, what):
    if not condition:
        print("rank %d: FAILED %s" % (rank, what), file=sys.stderr)
        sys.exit(3)


# -- environment and constants
out("identity", comm.rank == rank, comm.size == size, size)
out("constants", MPI.ANY_SOURCE, MPI.ANY_TAG, MPI.PROC_NULL, MPI.UNDEFINED, MPI.SUCCESS, comm.Get_attr(MPI.TAG_UB))
out("initialized", MPI.Is_initialized(), MPI.Is_finalized())
MPI.Init  # noqa: B018 -- exists
t0 = MPI.Wtime()
expect(MPI.Wtime() >= t0 and 0 < MPI.Wtick() < 1, "Wtime/Wtick")
out("processor", MPI.Get_processor_name() == socket.gethostname())
out("sizes", [t.Get_size() for t in (MPI.CHAR, MPI.BYTE, MPI.SHORT, MPI.INT, MPI.LONG, MPI.FLOAT, MPI.DOUBLE,
                                     MPI.INT32_T, MPI.INT64_T, MPI.UINT8_T, MPI.UNSIGNED, MPI.LONG_LONG)])
out("typechars", "".join(t.typechar for t in (MPI.DOUBLE, MPI.FLOAT, MPI.INT, MPI.LONG, MPI.SHORT, MPI.BYTE)))
st = MPI.Status()
out("empty status", st.source, st.tag, st.error, st.Get_count())
out("comm self", MPI.COMM_SELF.Get_rank(), MPI.COMM_SELF.Get_size(), MPI.COMM_SELF.allreduce(rank + 1))
MPI.COMM_SELF.send("me", 0, tag=3)
out("self message", MPI.COMM_SELF.recv(source=0, tag=3))
out("names", comm.Get_name(), MPI.COMM_SELF.Get_name())

# -- point to point, pickled
comm.send({"from": rank, "list": [rank] * 3}, dest=right, tag=11)
st = MPI.Status()
got = comm.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=st)
out("ring recv", got, st.source, st.Get_source(), st.tag, st.Get_tag(), st.error, st.Get_count() > 0)
# Tags select: tag 2 is received before tag 1, although sent after it.
comm.send("one", dest=right, tag=1)
comm.send("two", dest=right, tag=2)
out("by tag", comm.recv(source=left, tag=2), comm.recv(source=left, tag=1))
st = MPI.Status()
out("sendrecv", comm.sendrecv(rank * 10, dest=right, sendtag=4, source=left, recvtag=4, status=st), st.source, st.tag)
comm.send(None, dest=MPI.PROC_NULL)
st = MPI.Status()
out("proc null", comm.recv(source=MPI.PROC_NULL, status=st), st.source, st.tag, st.Get_count())
# probe/iprobe fill the status and leave the message queued.
comm.send(b"x" * 100, dest=right, tag=21)
st = MPI.Status()
out("probe", comm.probe(source=MPI.ANY_SOURCE, tag=21, status=st), st.source, st.tag)
out("iprobe", comm.iprobe(source=left, tag=21), comm.iprobe(source=left, tag=22))
out("probed message", len(comm.recv(source=left, tag=21)))
# Any-source at rank 0 from everyone.
if rank != 0:
    comm.send(rank, dest=0, tag=30)
else:
    out("any source", sorted(comm.recv(source=MPI.ANY_SOURCE, tag=30) for _ in range(size - 1)))

# -- nonblocking
requests = [comm.irecv(source=left, tag=40), comm.irecv(source=left, tag=40)]  # posted in this order
sends = [comm.isend("first %d" % rank, dest=right, tag=40), comm.isend("second %d" % rank, dest=right, tag=40)]
MPI.Request.Waitall(sends)
out("posting order", MPI.Request.waitall(requests))
out("requests null", requests[0] == MPI.REQUEST_NULL, sends[1] == MPI.REQUEST_NULL)
r = comm.irecv(source=left, tag=41)
comm.isend([rank, "x"], dest=right, tag=41).wait()
flag, value = False, None
while not flag:
    flag, value = r.test()
out("test", flag, value)
r = comm.irecv(source=MPI.ANY_SOURCE, tag=42)
comm.send(rank, dest=right, tag=42)
st = MPI.Status()
out("wait status", r.wait(status=st), st.source, st.tag)
rs = [comm.irecv(source=left, tag=43 + i) for i in range(3)]
for i in (2, 0, 1):
    comm.send(i, dest=right, tag=43 + i)
seen = []
for _ in range(3):
    index = MPI.Request.Waitany(rs) if not seen else None
    if index is None:
        index, value = MPI.Request.waitany(rs)
    else:
        value = None
    seen.append(index)
out("waitany", sorted(seen), MPI.Request.Waitany(rs))
rs = [comm.irecv(source=left, tag=50), comm.irecv(source=left, tag=51)]
comm.send("a", dest=right, tag=50)
comm.send("b", dest=right, tag=51)
while not MPI.Request.Testall(rs):
    pass
out("testall done", [r == MPI.REQUEST_NULL for r in rs])
rs = [comm.irecv(source=left, tag=52)]
comm.send("c", dest=right, tag=52)
flag, values = False, None
while not flag:
    flag, values = MPI.Request.testall(rs)
out("testall values", values)

# -- collectives, pickled
out("bcast", comm.bcast({"n": 5} if rank == 1 else None, root=1))
out("scatter", comm.scatter([i * i for i in range(size)] if rank == 0 else None, root=0))
out("gather", comm.gather(rank, root=size - 1))
out("allgather", comm.allgather(chr(65 + rank)))
out("alltoall", comm.alltoall([(rank, i) for i in range(size)]))
out("reduce sum", comm.reduce(rank + 1, op=MPI.SUM, root=0))
out("reduce lists", comm.reduce([rank], op=MPI.SUM, root=size - 1))
out("allreduce lists", comm.allreduce([rank]))
out("allreduce strings", comm.allreduce(str(rank)))
for name in ("SUM", "PROD", "MAX", "MIN", "LAND", "LOR", "LXOR", "BAND", "BOR", "BXOR"):
    out("allreduce", name, comm.allreduce(rank + 1 if name != "LAND" else rank, op=getattr(MPI, name)))
out("maxloc", comm.allreduce((rank % 2, rank), op=MPI.MAXLOC), comm.allreduce((-(rank % 2), rank), op=MPI.MINLOC))
concat = MPI.Op.Create(lambda x, y, datatype: x + y, commute=False)
out("noncommutative", comm.allreduce(str(rank), op=concat), comm.reduce(str(rank), op=concat, root=1))
out("python function", comm.allreduce((rank,), op=lambda x, y: x + y))
out("scan", comm.scan(rank + 1), comm.scan([rank]), comm.scan(str(rank), op=concat))
out("exscan", comm.exscan(rank + 1), comm.exscan(str(rank), op=concat))
comm.barrier()
comm.Barrier()

# -- communicators
dup = comm.Dup()
clone = comm.Clone()
out("dup", dup.Get_rank(), dup.Get_size(), clone.rank, dup == comm, isinstance(dup, MPI.Intracomm))
# Contexts keep messages apart: the same tag on comm and on dup.
comm.send("on world", dest=right, tag=60)
dup.send("on dup", dest=right, tag=60)
out("contexts", dup.recv(source=left, tag=60), comm.recv(source=left, tag=60))
dup.send("any tag on dup", dest=right, tag=61)
out("any tag stays in its communicator", dup.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG),
    comm.iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG))
half = comm.Split(color=rank % 2, key=-rank)
out("split", half.Get_rank(), half.Get_size(), half.allgather(rank))
st = MPI.Status()
half.send(rank, dest=(half.rank + 1) % half.size, tag=5)
out("split recv", half.recv(source=MPI.ANY_SOURCE, status=st), st.source, st.tag)
out("split collectives", half.bcast(rank, root=0), half.reduce(rank, root=0), half.scan(rank), half.exscan(rank))
quarter = half.Split(color=0, key=0)
out("split of split", quarter.rank, quarter.size, quarter.allreduce(rank))
none = comm.Split(MPI.UNDEFINED if rank == 0 else 1, rank)
out("undefined color", none == MPI.COMM_NULL, none.Get_size() if none != MPI.COMM_NULL else "-")
dup.Free()
clone.Free()
out("freed", dup == MPI.COMM_NULL)
out("after free", comm.allreduce(1))

# -- buffers: point to point
send = array.array("d", [rank + 0.5] * 4)
recv = array.array("d", [0.0] * 4)
comm.Send(send, dest=right, tag=70)
st = MPI.Status()
comm.Recv(recv, source=left, tag=70, status=st)
out("Send/Recv array", list(recv), st.source, st.tag, st.Get_count(MPI.DOUBLE), st.Get_count(MPI.BYTE))
ints = array.array("i", range(rank, rank + 6))
into = array.array("i", [-1] * 6)
comm.Send([ints, 3, MPI.INT], dest=right, tag=71)
st = MPI.Status()
comm.Recv([into, MPI.INT], source=left, tag=71, status=st)
out("count spec", list(into), st.Get_count(MPI.INT))
comm.Send([ints, (2, 3), MPI.INT], dest=right, tag=72)
comm.Recv([into, 2, 1, MPI.INT], source=left, tag=72)
out("displacements", list(into))
raw = bytearray(b"rank%d" % rank)
got = bytearray(len(raw))
comm.Sendrecv(raw, dest=right, sendtag=73, recvbuf=got, source=left, recvtag=73)
out("bytearray", bytes(got))
req = comm.Irecv([recv, MPI.DOUBLE], source=left, tag=74)
comm.Isend([send, MPI.DOUBLE], dest=right, tag=74).Wait()
st = MPI.Status()
req.Wait(st)
out("Isend/Irecv", list(recv), st.source, st.Get_count(MPI.DOUBLE))

# -- buffers: collectives
buf = array.array("i", [rank] * 3 if rank != 0 else [7, 8, 9])
comm.Bcast(buf, root=0)
out("Bcast", list(buf))
whole = array.array("i", range(2 * size)) if rank == 1 else None
part = array.array("i", [0, 0])
comm.Scatter(whole, part, root=1)
out("Scatter", list(part))
gathered = array.array("i", [0] * (2 * size)) if rank == size - 1 else None
comm.Gather(array.array("i", [rank, -rank]), gathered, root=size - 1)
out("Gather", list(gathered) if gathered is not None else None)
everyone = array.array("d", [0.0] * size)
comm.Allgather(array.array("d", [rank / 2]), everyone)
out("Allgather", list(everyone))
mixed = array.array("i", [0] * size)
comm.Alltoall(array.array("i", [rank * 10 + i for i in range(size)]), mixed)
out("Alltoall", list(mixed))
total = array.array("i", [0, 0])
comm.Reduce(array.array("i", [rank, 1]), total, op=MPI.SUM, root=0)
out("Reduce", list(total) if rank == 0 else "-")
for name in ("SUM", "PROD", "MAX", "MIN", "BAND", "BOR", "BXOR", "LAND", "LOR", "LXOR"):
    result = array.array("l", [0, 0])
    comm.Allreduce(array.array("l", [rank + 1, rank % 2]), result, op=getattr(MPI, name))
    out("Allreduce", name, list(result))
doubles = array.array("d", [0.0])
comm.Allreduce([array.array("d", [rank * 0.25]), MPI.DOUBLE], [doubles, MPI.DOUBLE], op=MPI.MAX)
out("Allreduce double", list(doubles))


def digits(invec, inoutvec, datatype):
    # Concatenates decimal digits: associative, not commutative.
    a = memoryview(invec).cast("B").cast("i")
    b = memoryview(inoutvec).cast("B").cast("i")
    for i in range(len(a)):
        b[i] = int(str(a[i]) + str(b[i]))


digit_op = MPI.Op.Create(digits, commute=False)
result = array.array("i", [0])
comm.Allreduce(array.array("i", [rank + 1]), result, op=digit_op)
out("user op", list(result))
comm.Reduce(array.array("i", [rank + 1]), result, op=digit_op, root=size - 1)
out("user op reduce", list(result) if rank == size - 1 else "-")
prefix = array.array("i", [0])
comm.Scan(array.array("i", [rank + 1]), prefix)
out("Scan", list(prefix))
prefix = array.array("i", [-5])
comm.Exscan(array.array("i", [rank + 1]), prefix)
out("Exscan", list(prefix) if rank else "-")

# -- IN_PLACE
mine = array.array("i", [rank, rank * 2])
comm.Allreduce(MPI.IN_PLACE, mine, op=MPI.SUM)
out("Allreduce IN_PLACE", list(mine))
mine = array.array("i", [rank + 1])
if rank == 0:
    comm.Reduce(MPI.IN_PLACE, mine, op=MPI.PROD, root=0)
    out("Reduce IN_PLACE", list(mine))
else:
    comm.Reduce(mine, None, op=MPI.PROD, root=0)
table = array.array("i", [rank * 100 if i == rank else -1 for i in range(size)])
comm.Allgather(MPI.IN_PLACE, table)
out("Allgather IN_PLACE", list(table))
if rank == 0:
    table = array.array("i", [5] + [0] * (size - 1))
    comm.Gather(MPI.IN_PLACE, table, root=0)
    out("Gather IN_PLACE", list(table))
else:
    comm.Gather(array.array("i", [rank + 5]), None, root=0)
if rank == 0:
    table = array.array("i", range(size))
    comm.Scatter(table, MPI.IN_PLACE, root=0)
    out("Scatter IN_PLACE", list(table))
else:
    cell = array.array("i", [0])
    comm.Scatter(None, cell, root=0)
    out("Scatter IN_PLACE", list(cell))
square = array.array("i", [rank * 10 + i for i in range(size)])
comm.Alltoall(MPI.IN_PLACE, square)
out("Alltoall IN_PLACE", list(square))

# -- MPI.pickle: the lowercase calls' serializer, and swapping it (as for dill)
out("pickle", MPI.pickle.PROTOCOL, MPI.pickle.loads(MPI.pickle.dumps({"a": [1, 2]})))
two = MPI.Pickle(protocol=2)
out("pickle protocol 2", two.PROTOCOL, two.dumps((1, 2))[:2] == pickle.dumps((1, 2), 2)[:2], two.loads(two.dumps([rank])))
calls = []


def counting_dumps(obj, *protocol):
    calls.append(protocol)
    return pickle.dumps(obj)


MPI.pickle.__init__(counting_dumps, pickle.loads)
comm.send(("custom", rank), dest=right, tag=40)
out("custom pickle", comm.recv(source=left, tag=40), calls, MPI.pickle.PROTOCOL)
MPI.pickle.__init__()
out("default pickle again", MPI.pickle.PROTOCOL, comm.sendrecv(rank, dest=right, source=left))

# -- numpy
if np is not None:
    a = np.arange(5, dtype=np.float64) + rank
    b = np.empty(5, dtype=np.float64)
    comm.Sendrecv(a, dest=right, recvbuf=b, source=left)
    out("numpy Sendrecv", b.tolist())
    counts = np.zeros(3, dtype="i")
    comm.Allreduce(np.array([rank, 1, rank * rank], dtype="i"), counts, op=MPI.SUM)
    out("numpy Allreduce", counts.tolist())
    total = np.zeros(2) if rank == 0 else None
    comm.Reduce(np.array([rank * 1.5, 1.0]), total, op=MPI.SUM, root=0)
    out("numpy Reduce", total.tolist() if rank == 0 else "-")
    grid = np.zeros((size, 2), dtype=np.int64)
    comm.Allgather(np.array([rank, -rank], dtype=np.int64), grid)
    out("numpy Allgather", grid.tolist())
    m = np.full(4, rank, dtype=np.int32) if rank == 0 else np.zeros(4, dtype=np.int32)
    comm.Bcast([m, MPI.INT], root=0)
    out("numpy Bcast", m.tolist())
    out("numpy lowercase", comm.allreduce(np.array([rank, 1])).tolist())
else:
    out("numpy skipped")

MPI.Finalize()
out("finalized", MPI.Is_finalized())
