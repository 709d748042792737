"""distr's mpi4py-compatible MPI module (placeholder until the mpi4py layer lands)."""
