"""Pi by the midpoint rule, split across the ranks and summed with mpi4py's buffer Reduce.

Uses numpy when it is installed (DISTR_NUMPY=0 makes distr's layer act as if it were not),
else plain Python with array.array as the buffer.

    distr-master run --local 4 pi.py [intervals]    # or: mpirun -np 4 python3 pi.py
"""
import array
import os
import sys

from mpi4py import MPI

try:
    if os.environ.get("DISTR_NUMPY") == "0":
        raise ImportError("DISTR_NUMPY=0")
    import numpy
except ImportError:
    numpy = None

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
h = 1.0 / n
# Rank r takes intervals r, r + size, r + 2*size, ...
if numpy is not None:
    x = h * (numpy.arange(rank, n, size, dtype=numpy.float64) + 0.5)
    mine = numpy.array([numpy.sum(4.0 / (1.0 + x * x)) * h])
    total = numpy.zeros(1) if rank == 0 else None
else:
    mine = array.array("d", [h * sum(4.0 / (1.0 + (h * (i + 0.5)) ** 2) for i in range(rank, n, size))])
    total = array.array("d", [0.0]) if rank == 0 else None

comm.Reduce([mine, MPI.DOUBLE], [total, MPI.DOUBLE] if rank == 0 else None, op=MPI.SUM, root=0)

if rank == 0:
    print("pi is about %.10f (error %.1e) from %d intervals on %d ranks" % (total[0], abs(total[0] - 3.141592653589793), n, size))
