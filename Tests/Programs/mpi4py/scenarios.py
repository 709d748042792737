"""distr-only checks of the mpi4py layer (Mpi4pyTests): `python3 scenarios.py NAME`.

    errors      unsupported calls, bad ranks/tags/roots, buffer spec mistakes (any number of ranks)
    ring MiB    everyone Sends and sends MiB to the next rank before anyone receives
    dead-peer   3 ranks: rank 2 exits; receives that wait for it raise (any-source in a sub-communicator too)
    abort       3 ranks: rank 1 calls Abort(7) while the others wait in recv

Each prints "ok NAME" on every rank that finishes.
"""
import array
import os
import sys

import mpi4py
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
scenario = sys.argv[1]


def fail(what):
    print("FAILED %s: %s" % (scenario, what), file=sys.stderr)
    sys.exit(3)


def raises(kind, text, call, *args, **kwargs):
    """call(*args) raises `kind` whose message contains `text`; returns the message."""
    try:
        call(*args, **kwargs)
    except kind as error:
        if text not in str(error):
            fail("%s: %r does not mention %r" % (getattr(call, "__name__", call), str(error), text))
        return str(error)
    fail("%s did not raise %s" % (getattr(call, "__name__", call), kind.__name__))


if scenario == "errors":
    if not getattr(mpi4py, "__distr__", False):
        fail("this is not distr's mpi4py")
    # Outside the subset: NotImplementedError naming the call and pointing at the docs.
    message = raises(NotImplementedError, "MPI.Win", getattr, MPI, "Win")
    if "docs/mpi4py.md" not in message:
        fail("no pointer to the docs: " + message)
    raises(NotImplementedError, "MPI.Comm.Spawn", lambda: comm.Spawn("python3"))
    raises(NotImplementedError, "MPI.Comm.Get_group", lambda: comm.Get_group())
    raises(NotImplementedError, "MPI.Comm.Ialltoallv", lambda: MPI.COMM_SELF.Ialltoallv)
    raises(NotImplementedError, "MPI.Request.Waitsome", lambda: MPI.Request.Waitsome([]))
    raises(NotImplementedError, "MPI.Status.tomemory", lambda: MPI.Status().tomemory())
    raises(NotImplementedError, "MPI.Datatype.Create_vector", lambda: MPI.DOUBLE.Create_vector(2, 1, 2))
    raises(NotImplementedError, "MPI.Init_thread", lambda: MPI.Init_thread())
    raises(NotImplementedError, "mpi4py.get_include", mpi4py.get_include)
    if hasattr(MPI, "Win") or hasattr(comm, "Spawn"):
        fail("hasattr is True for an unsupported call")
    # A name mpi4py does not have either stays an AttributeError.
    raises(AttributeError, "Sned", lambda: comm.Sned)
    try:
        MPI.NoSuchThing
        fail("MPI.NoSuchThing exists")
    except NotImplementedError:
        fail("MPI.NoSuchThing raised NotImplementedError")
    except AttributeError:
        pass
    # Bad ranks, tags, roots: MPI.Exception naming what is wrong.
    raises(MPI.Exception, "rank", comm.send, 1, size)
    raises(MPI.Exception, "rank", comm.send, 1, -7)
    raises(MPI.Exception, "source %d is not a rank" % size, comm.recv, source=size)
    raises(MPI.Exception, "tag -3", comm.send, 1, 0, tag=-3)
    raises(MPI.Exception, "root %d" % size, comm.bcast, 1, root=size)
    raises(MPI.Exception, "rank", comm.Send, bytearray(4), size)
    # Buffer spec mistakes.
    raises(TypeError, "not a buffer", comm.Send, [1, 2, 3], 0)
    raises(TypeError, "read-only", comm.Recv, b"abc", 0)
    raises(ValueError, "holds 8 bytes", comm.Send, [bytearray(8), 3, MPI.INT], 0)
    raises(ValueError, "one per rank", MPI.COMM_SELF.scatter, [1, 2])
    # A longer message than the receive buffer: an error, not a silent truncation.
    comm.Send(array.array("d", [1.0] * 4), dest=rank, tag=9)
    raises(MPI.Exception, "32 bytes", comm.Recv, array.array("d", [0.0] * 2), source=rank, tag=9)
    # Freed communicators and COMM_NULL.
    dup = comm.Dup()
    dup.Free()
    raises(MPI.Exception, "COMM_NULL", dup.send, 1, 0)
    raises(MPI.Exception, "cannot be freed", comm.Free)
    comm.barrier()
    print("ok errors")

elif scenario == "ring":
    mib = int(sys.argv[2])
    right, left = (rank + 1) % size, (rank - 1) % size
    big = bytearray([rank % 256]) * (mib << 20)
    comm.Send(big, dest=right, tag=1)
    comm.send(bytes([rank % 256]) * (mib << 20), dest=right, tag=2)
    into = bytearray(mib << 20)
    status = MPI.Status()
    comm.Recv(into, source=left, tag=1, status=status)
    obj = comm.recv(source=left, tag=2)
    if status.Get_count() != mib << 20 or into.count(left % 256) != len(into) or obj != bytes([left % 256]) * (mib << 20):
        fail("wrong data")
    print("ok ring %d MiB" % mib)

elif scenario == "dead-peer":
    # Ranks 1 and 2 form a sub-communicator; rank 2 leaves at once.
    sub = comm.Split(0 if rank else MPI.UNDEFINED, rank)
    if rank == 2:
        sys.exit(0)
    if rank == 1:
        # Rank 0 is alive, but it is not in `sub`: an any-source receive on sub must fail.
        any_source = raises(MPI.Exception, "of this communicator (world ranks 2) has exited", sub.recv, source=MPI.ANY_SOURCE)
        named = raises(MPI.Exception, "rank 2 has exited", comm.recv, source=2)
        request = comm.irecv(source=2, tag=5)
        raises(MPI.Exception, "rank 2 has exited", request.wait)
        comm.send("done", dest=0)
        print("ok dead-peer: " + any_source)
        print("ok dead-peer: " + named)
    else:
        if comm.recv(source=1) != "done":
            fail("rank 1 did not finish")
        print("ok dead-peer")

elif scenario == "two-apis":
    # The distr module and COMM_WORLD share the job's collective calls: mixed in one program,
    # each call pairs with the same call on the other ranks.
    import distr
    total = distr.allreduce(rank)
    if comm.allreduce(rank) != total or comm.bcast(rank, root=size - 1) != size - 1:
        fail("COMM_WORLD after a distr collective")
    distr.barrier()
    if distr.bcast(rank, root=0) != 0 or comm.gather(rank, root=0) not in (None, list(range(size))):
        fail("distr after COMM_WORLD collectives")
    print("ok two-apis")

elif scenario == "abort":
    if rank == 1:
        comm.barrier()
        comm.Abort(7)
    comm.barrier()
    comm.recv(source=1)
    fail("recv returned after Abort")

else:
    fail("unknown scenario")
