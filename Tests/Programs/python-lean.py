# What a Python rank loads (Tests/EndToEndTests/PythonModuleTests.swift runs it on four workers):
# python3 python-lean.py distr|mpi4py. `import distr` and a ring in which every rank dials
# another worker must not load the standard modules distr keeps off a rank's start (they cost
# about 20 ms of CPU per rank: docs/launching-python.md). Prints "ok lean MODE" or what was loaded.
import sys

before = set(sys.modules)
mode = sys.argv[1]
if mode == "distr":
    import distr

    me, n = distr.node_id, distr.n_node
    distr.send((me + 1) % n, "from %d" % me)
    got = distr.recv((me - 1) % n)
    ok = got == "from %d" % ((me - 1) % n)
else:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    me, n = comm.Get_rank(), comm.Get_size()
    comm.Send(bytearray(b"%d" % me), dest=(me + 1) % n)
    got = bytearray(8)
    status = MPI.Status()
    comm.Recv(got, source=(me - 1) % n, status=status)
    ok = bytes(got[: status.Get_count(MPI.BYTE)]) == b"%d" % ((me - 1) % n) and MPI.Get_processor_name() != ""
avoided = ["pickle", "re", "socket", "selectors", "hashlib", "_hashlib", "hmac", "encodings.idna"]
loaded = [name for name in avoided if name in sys.modules and name not in before]
if not ok:
    print("wrong message: %r" % (got,))
elif loaded:
    print("loaded: " + " ".join(loaded))
else:
    print("ok lean " + mode)
