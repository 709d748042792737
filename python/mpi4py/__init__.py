"""distr's mpi4py-compatible layer: `from mpi4py import MPI` under distr resolves here (placeholder)."""
