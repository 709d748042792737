"""distr for Python (work in progress on branch pycore): the transport is in distr._transport."""
from ._transport import DistrError, JobAborted, PeerExited  # noqa: F401
