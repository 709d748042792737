"""Scatter, as in the Raspberry Pi cluster tutorials for mpi4py (pythonprogramming.net), unchanged
but for Python 3's print: rank 0 builds one value per rank and scatters them.

    distr-master run --local 4 scatter.py        # or: mpirun -np 4 python3 scatter.py
"""
from mpi4py import MPI

comm = MPI.COMM_WORLD
size = comm.Get_size()
rank = comm.Get_rank()

if rank == 0:
    data = [(x + 1) ** x for x in range(size)]
    print("we will be scattering:", data)
else:
    data = None

data = comm.scatter(data, root=0)
print("rank", rank, "has data:", data)
