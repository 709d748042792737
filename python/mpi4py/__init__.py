"""distr's stand-in for the mpi4py package: `from mpi4py import MPI` under distr-master.

distr-worker puts this package on the import path of every rank (unless the job sets
DISTR_MPI4PY=0), so programs written for `mpirun python3 prog.py` run unchanged with
`distr-master run --local 4 prog.py`. A real mpi4py started by distr would see itself as rank 0
of 1. `mpi4py.MPI` is distr's layer (python/mpi4py/MPI.py); docs/mpi4py.md lists what it covers.
"""

#: The mpi4py release whose API this layer follows (a subset of it).
__version__ = "4.1.2"
__author__ = "distr (an mpi4py-compatible layer)"
#: True here, absent in the real mpi4py: lets a program tell the two apart.
__distr__ = True

__all__ = ["MPI", "rc"]


class Rc:
    """mpi4py's runtime configuration. distr accepts and keeps the settings; none changes
    anything here (there is no MPI_Init to configure)."""

    initialize = True
    threads = True
    thread_level = "multiple"
    finalize = None
    fast_reduce = True
    recv_mprobe = True
    irecv_bufsz = 32768
    errors = "exception"

    def __init__(self, **kwargs):
        self(**kwargs)

    def __call__(self, **kwargs):
        for key, value in kwargs.items():
            if not hasattr(self, key):
                raise TypeError("unexpected argument '%s' for mpi4py.rc" % key)
            setattr(self, key, value)

    def __repr__(self):
        return "<%s.rc>" % __name__


rc = Rc()


def _unsupported(name):
    return NotImplementedError(
        "mpi4py.%s is not supported by distr's mpi4py layer; docs/mpi4py.md lists what it supports" % name)


def get_include():
    raise _unsupported("get_include (there is no MPI C library to build against under distr)")


def get_config():
    raise _unsupported("get_config")


def profile(*args, **kwargs):
    raise _unsupported("profile")
