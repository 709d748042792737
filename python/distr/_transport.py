"""The rank side of distr's wire format (docs/messages.md), for Python: one Transport per process.

Contract changes against /work/plan-python.md: none, and two details the plan leaves open:
- recv/wait with `into=`: the payload always ends up in `into` (read straight into it when its
  bytes had not arrived yet, else copied once), and `Message.payload` is then
  `memoryview(into).cast('B')[:length]`.
- PeerExited for an any-source receive (every rank in `members` but this one has exited) has
  `.rank` None and `.status` None.

No background threads: every blocking call runs the progress engine itself. It polls the agent
channel and every incoming rank connection, reads what is there into one reusable buffer per
connection, cuts frames (24-byte big-endian header), checks each header the way Swift's
RankFrameDecoder does, and hands complete messages first to posted receives (in posting order),
else to a queue that recv/probe search. A large payload whose receive was already posted with a
buffer (`into=`) is read from the socket straight into that buffer.

Sends are synchronous to the kernel: `send` returns when the whole frame was written to the
socket. While the socket is full it keeps reading every incoming connection, so sends never wait
for the receiver to call recv (everyone sending 32 MiB to the next rank, then receiving, works).
"""

import errno
import os
import select
import struct
import time

# The C module under `socket`: the Python one (with selectors and enum) took a third of the time
# of `import distr` (see _connect_tcp for the connections this module makes itself).
import _socket

try:
    from _operator import _compare_digest  # hmac.compare_digest, without hmac's import of OpenSSL
except ImportError:
    from hmac import compare_digest as _compare_digest

__all__ = ["DistrError", "PeerExited", "JobAborted", "Message", "PostedReceive", "Transport", "world"]

_HEADER = struct.Struct(">BBBBIqQ")
_HEADER_SIZE = 24
_KIND_MESSAGE = 1
_KIND_GOODBYE = 2
#: Element sizes of the numeric-array element codes (docs/messages.md §3).
ELEMENT_SIZES = {1: 8, 2: 4, 3: 8, 4: 8, 5: 4, 6: 2, 7: 1, 8: 8, 9: 8, 10: 4, 11: 2, 12: 1}
# The handshake version of docs/protocol.md (Handshake.version in Swift).
PROTOCOL_VERSION = 5
DEFAULT_MAX_MESSAGE_BYTES = 1 << 30
_BUFFER_SIZE = 256 * 1024
#: Payload still due of at least this many bytes is read straight into its final buffer.
_DIRECT_THRESHOLD = 32 * 1024
_SMALL_SEND = 16 * 1024
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_NOSIGNAL = getattr(_socket, "MSG_NOSIGNAL", 0)


class DistrError(RuntimeError):
    """An error of distr's message passing: what went wrong, with which rank, and what to do."""


class PeerExited(DistrError):
    """The rank a receive waits for has exited and nothing matching from it can arrive any more.

    `rank` and `status` (exit code, 128+signal) are None when every rank an any-source receive
    could take from has exited.
    """

    def __init__(self, rank, status):
        if rank is None:
            text = "every other rank has exited and no matching message is pending"
        else:
            text = "rank %d has exited (status %d) and no matching message from it is pending" % (rank, status)
        DistrError.__init__(self, text)
        self.rank = rank
        self.status = status


class JobAborted(DistrError):
    """The job is being ended (another rank failed, the master was interrupted, or the worker went away)."""

    def __init__(self, reason):
        DistrError.__init__(self, "the job is being ended: %s" % reason)
        self.reason = reason


class Message:
    """One received message: its header fields and its payload (bytes-like)."""

    __slots__ = ("source", "tag", "encoding", "element", "fingerprint", "payload", "length")

    def __init__(self, source, tag, encoding, element, fingerprint, payload, length):
        self.source = source
        self.tag = tag
        self.encoding = encoding
        self.element = element
        self.fingerprint = fingerprint
        self.payload = payload
        self.length = length

    def __repr__(self):
        return "Message(source=%d, tag=%d, encoding=%d, element=%d, length=%d)" % (
            self.source, self.tag, self.encoding, self.element, self.length)


class PostedReceive:
    """A receive waiting for a message (Transport.post). `message` is set once it is complete."""

    __slots__ = ("source", "tag_lo", "tag_hi", "into", "members", "message", "error", "_claimed")

    def __init__(self, source, tag_lo, tag_hi, into, members):
        self.source = source
        self.tag_lo = tag_lo
        self.tag_hi = tag_hi
        self.into = into
        self.members = members
        self.message = None
        self.error = None
        self._claimed = None  # the _Incoming whose message in progress this receive took

    @property
    def done(self):
        return self.message is not None or self.error is not None

    def matches(self, source, tag):
        if self.source is None:
            if self.members is not None and source not in self.members:
                return False
        elif source != self.source:
            return False
        return self.tag_lo <= tag <= self.tag_hi


def _byte_view(buffer, writable=False):
    """A flat unsigned-byte memoryview of any object with the buffer protocol."""
    view = buffer if isinstance(buffer, memoryview) else memoryview(buffer)
    if writable and view.readonly:
        raise DistrError("the receive buffer is read-only; pass a bytearray, array.array or numpy array")
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise DistrError("the buffer is not contiguous; pass a contiguous one (numpy.ascontiguousarray)")
        view = view.cast("B")
    return view


def _fit_into(into, length, source):
    view = _byte_view(into, writable=True)
    if length > len(view):
        raise DistrError("rank %d sent %d bytes; the receive buffer holds %d" % (source, length, len(view)))
    return view


class _Incoming:
    """One connection another rank opened to this one: its socket, read buffer and the frame in progress."""

    __slots__ = ("sock", "fd", "source", "buf", "view", "start", "end", "msg", "target", "filled", "claimant", "closed")

    def __init__(self, sock, source):
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.source = source
        self.buf = bytearray(_BUFFER_SIZE)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.msg = None        # header parsed, payload still arriving
        self.target = None     # where the payload goes (a writable byte memoryview)
        self.filled = 0
        self.claimant = None   # the PostedReceive that took the message in progress
        self.closed = False


class Transport:
    """This process's rank: identity, connections, and the progress engine (see the module doc)."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        for name in ("DISTR_NODE_ID", "DISTR_N_NODE", "DISTR_AGENT_FD"):
            if name not in env:
                raise DistrError(
                    "this program was not started by distr-master (%s is not set); "
                    "run it with: distr-master run --local 4 <program>" % name)
        text = env.get("DISTR_MAX_MESSAGE_BYTES")
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
        if text is not None:
            try:
                self.max_message_bytes = int(text)
            except ValueError:
                self.max_message_bytes = 0
            if self.max_message_bytes < 1:
                raise DistrError(
                    "DISTR_MAX_MESSAGE_BYTES=%s is not a byte count (a whole number, 1 or more)" % text)
        try:
            self.id = int(env["DISTR_NODE_ID"])
            self.count = int(env["DISTR_N_NODE"])
            fd = int(env["DISTR_AGENT_FD"])
        except ValueError:
            raise DistrError("the agent channel from distr-worker is unusable: "
                             "DISTR_NODE_ID, DISTR_N_NODE and DISTR_AGENT_FD must be numbers") from None
        if not (self.count > 0 and 0 <= self.id < self.count):
            raise DistrError("the agent channel from distr-worker is unusable: "
                             "DISTR_NODE_ID and DISTR_N_NODE do not name a rank of the job")
        # Collective calls made so far per communicator context (0: the whole job). The distr
        # module and mpi4py's COMM_WORLD both count here, so a program may mix their collectives.
        self._collective_calls = {}
        spin = env.get("DISTR_SPIN_USEC", "50")
        try:
            self._spin = max(0.0, float(spin)) / 1e6
        except ValueError:
            self._spin = 50e-6
        try:
            self._agent = _socket.socket(fileno=fd)
        except OSError as error:
            raise DistrError("the agent channel from distr-worker is unusable: descriptor %d: %s" % (fd, error)) from None
        # Programs this rank starts must not inherit the channel.
        os.set_inheritable(fd, False)

        self._queue = []          # complete messages nobody has taken yet, in arrival order
        self._posted = []         # posted receives, in posting order
        self._incoming = {}       # fd -> _Incoming
        self._links = {}          # rank -> outgoing socket
        self._local_answers = {}  # rank -> socket or DistrError (answers to connectLocal)
        self._exited = {}         # rank -> status
        self._open = {}           # rank -> connections from it not yet at end of stream
        self._broken = {}         # rank -> DistrError: its connection was closed for a bad frame
        self._aborted = None
        self._epoch = 0           # counts exits, ends of connections and aborts (receives recheck failures then)
        self._poll = select.poll()

        self._agent.sendmsg([b"\x01" + struct.pack(">q", self.id)])
        early = []
        while True:
            data, fds = self._agent_receive(4 << 20)
            if data is None:
                raise DistrError("the agent channel from distr-worker is unusable: the worker closed the channel")
            if data[:1] == b"\x02":
                for extra in fds:
                    os.close(extra)
                break
            early.append((data, fds))
        r = _Reader(data, 1)
        self.job_id = r.string()
        self._key = r.data()
        self._worker = r.i64()
        self._placements = [(r.i64(), r.string(), r.i64(), r.i64(), r.string()) for _ in range(r.u32())]
        if len(self._placements) != self.count:
            raise DistrError("the agent channel from distr-worker is unusable: unexpected answer from the worker")
        self._agent.setblocking(False)
        self._poll.register(self._agent.fileno(), _POLLIN)
        for data, fds in early:
            self._handle_agent(data, fds)

    # ------------------------------------------------------------------ agent channel

    def _agent_receive(self, size):
        """One agent message and the descriptors riding along; (None, []) at end of stream."""
        data, ancillary, _, _ = self._agent.recvmsg(size, _socket.CMSG_SPACE(16))
        fds = []
        for level, kind, extra in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds.extend(struct.unpack("%di" % (len(extra) // 4), extra[: len(extra) - len(extra) % 4]))
        if not data:
            for extra in fds:
                os.close(extra)
            return None, []
        return data, fds

    def _drain_agent(self):
        while True:
            try:
                data, fds = self._agent_receive(64 * 1024)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                data, fds = None, []
                if self._aborted is None:
                    self._aborted = "the agent channel failed: %s" % error
            if data is None:
                if self._aborted is None:
                    self._aborted = "the worker closed the agent channel"
                try:
                    self._poll.unregister(self._agent.fileno())
                except (KeyError, ValueError):
                    pass  # already unregistered: the channel ended before
                self._fail_hopeless()
                return
            self._handle_agent(data, fds)

    def _handle_agent(self, data, fds):
        fd = fds[0] if fds else -1
        for extra in fds[1:]:
            os.close(extra)
        r = _Reader(data, 1)
        kind = data[0]
        if kind == 5:  # incoming
            source = r.i64()
            if fd >= 0 and 0 <= source < self.count:
                # Counted before any later exit notice is read: the channel is ordered.
                self._open[source] = self._open.get(source, 0) + 1
                conn = _Incoming(_socket.socket(fileno=fd), source)
                self._incoming[conn.fd] = conn
                self._poll.register(conn.fd, _POLLIN)
                return
        elif kind == 4:  # connected
            to, error = r.i64(), r.string()
            if 0 <= to < self.count:
                if fd >= 0:
                    self._local_answers[to] = _socket.socket(fileno=fd)
                    return
                self._local_answers[to] = DistrError("cannot connect to rank %d: %s" % (to, error))
        elif kind == 6:  # peerExited
            rank, status = r.i64(), struct.unpack(">i", r.take(4))[0]
            self._exited[rank] = status
            self._fail_hopeless()
        elif kind == 7:  # abort
            if self._aborted is None:
                self._aborted = r.string()
            self._fail_hopeless()
        if fd >= 0:
            os.close(fd)

    # ------------------------------------------------------------------ progress

    def _progress(self, timeout_ms):
        """One pass: waits up to `timeout_ms` (0: not at all, -1: until something happens), then
        reads everything that is there."""
        try:
            events = self._poll.poll(timeout_ms)
        except InterruptedError:
            return
        if events:
            self._dispatch(events)

    def _dispatch(self, events):
        agent = self._agent.fileno()
        for fd, _ in events:
            if fd == agent:
                self._drain_agent()
            else:
                conn = self._incoming.get(fd)
                if conn is not None:
                    self._read(conn)

    def _read(self, conn):
        """Reads what the connection has now and handles every whole frame in it."""
        while not conn.closed:
            msg = conn.msg
            if msg is not None and conn.start == conn.end and msg.length - conn.filled >= _DIRECT_THRESHOLD:
                # The rest of a large payload: straight into its final buffer.
                n = self._recv_into(conn, conn.target[conn.filled:])
                if not n:
                    return
                conn.filled += n
                if conn.filled == msg.length:
                    self._complete(conn)
                continue
            if conn.start == conn.end:
                conn.start = conn.end = 0
            elif conn.end == len(conn.buf):
                left = conn.end - conn.start
                conn.buf[0:left] = conn.view[conn.start:conn.end]
                conn.start, conn.end = 0, left
            n = self._recv_into(conn, conn.view[conn.end:])
            if not n:
                return
            room = len(conn.buf) - conn.end
            conn.end += n
            self._parse(conn)
            if n < room:
                # The kernel had less than the room offered: nothing more is there now.
                return

    def _recv_into(self, conn, view):
        """Bytes read into view; 0 when nothing is there now or the connection ended (then it is closed)."""
        try:
            n = conn.sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            n = 0  # a reset: the sender is gone, like an end of stream
        if n == 0:
            self._end(conn, None)
        return n

    def _parse(self, conn):
        """Handles the frames in the connection's buffer."""
        view = conn.view
        while not conn.closed:
            msg = conn.msg
            if msg is not None:
                due = msg.length - conn.filled
                take = min(due, conn.end - conn.start)
                if take:
                    conn.target[conn.filled:conn.filled + take] = view[conn.start:conn.start + take]
                    conn.start += take
                    conn.filled += take
                if conn.filled < msg.length:
                    return
                self._complete(conn)
                continue
            if conn.end - conn.start < _HEADER_SIZE:
                return
            kind, encoding, element, _, fingerprint, tag, length = _HEADER.unpack_from(conn.buf, conn.start)
            if kind != _KIND_MESSAGE or encoding > 1 or length > self.max_message_bytes:
                problem = self._check_header(conn.source, kind, encoding, element, length)
                if problem is not None:
                    self._end(conn, problem)
                    return
            conn.start += _HEADER_SIZE
            if kind == _KIND_GOODBYE:
                self._end(conn, None)
                return
            if conn.end - conn.start >= length:
                # The whole payload is here (the common case for small messages).
                payload = bytes(view[conn.start:conn.start + length])
                conn.start += length
                self._deliver(Message(conn.source, tag, encoding, element, fingerprint, payload, length))
                continue
            msg = Message(conn.source, tag, encoding, element, fingerprint, None, length)
            conn.msg = msg
            conn.filled = 0
            claimant = self._claim(msg)
            conn.claimant = claimant
            target = None
            if claimant is not None:
                claimant._claimed = conn
                if claimant.into is not None:
                    try:
                        target = _fit_into(claimant.into, length, conn.source)[:length]
                    except DistrError as error:
                        claimant.error = error  # the message is still read, then dropped
            if target is None:
                target = memoryview(bytearray(length))
            conn.target = target

    def _check_header(self, source, kind, encoding, element, length):
        """The error for a header the format does not allow (like Swift's RankFrameDecoder), else None."""
        if kind == _KIND_GOODBYE:
            return None
        if kind != _KIND_MESSAGE:
            return self._bad_frame(source, "unknown frame kind %d" % kind)
        if encoding > 3:
            return self._bad_frame(source, "unknown encoding %d" % encoding)
        if length > self.max_message_bytes:
            return DistrError(
                "rank %d sent a message of %d bytes, over the limit of %d (DISTR_MAX_MESSAGE_BYTES); "
                "the connection from rank %d was closed" % (source, length, self.max_message_bytes, source))
        if encoding == 2:
            size = ELEMENT_SIZES.get(element)
            if size is None:
                return self._bad_frame(source, "unknown numeric element code %d" % element)
            if length % size:
                return self._bad_frame(
                    source, "a numeric payload of %d bytes is not a whole number of %d-byte elements" % (length, size))
        return None

    @staticmethod
    def _bad_frame(source, detail):
        return DistrError("rank %d sent a malformed message header (%s); the connection from rank %d was closed"
                          % (source, detail, source))

    def _complete(self, conn):
        msg = conn.msg
        claimant = conn.claimant
        target = conn.target
        conn.msg = conn.target = conn.claimant = None
        conn.filled = 0
        msg.payload = target
        if claimant is None:
            self._deliver(msg)
            return
        claimant._claimed = None
        if claimant.error is None:
            claimant.message = msg

    def _end(self, conn, failure):
        """The connection reached end of stream (failure None) or broke the format (failure set)."""
        conn.closed = True
        try:
            self._poll.unregister(conn.fd)
        except (KeyError, ValueError):
            pass  # never registered or already gone: nothing to stop watching
        self._incoming.pop(conn.fd, None)
        if failure is None and conn.msg is not None:
            failure = DistrError("the connection from rank %d ended in the middle of a message of %d bytes"
                                 % (conn.source, conn.msg.length))
        if conn.claimant is not None:
            conn.claimant._claimed = None
            if conn.claimant.error is None:
                conn.claimant.error = failure
        conn.msg = conn.target = conn.claimant = None
        try:
            if failure is not None:
                conn.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass  # the peer reset it already: heard no more either way
        conn.sock.close()
        self._open[conn.source] = self._open.get(conn.source, 1) - 1
        if failure is not None and conn.source not in self._broken:
            self._broken[conn.source] = failure
        self._fail_hopeless()

    # ------------------------------------------------------------------ matching

    def _claim(self, msg):
        """The first posted receive that matches msg, taken off the list; None when there is none."""
        posted = self._posted
        for i in range(len(posted)):
            p = posted[i]
            if p.matches(msg.source, msg.tag):
                del posted[i]
                return p
        return None

    def _deliver(self, msg):
        """A complete message: to the first matching posted receive, else to the queue."""
        p = self._claim(msg)
        if p is None:
            self._queue.append(msg)
            return
        self._give(p, msg)

    def _give(self, p, msg):
        if p.into is not None:
            try:
                view = _fit_into(p.into, msg.length, msg.source)
            except DistrError as error:
                p.error = error
                return
            view[:msg.length] = msg.payload
            msg.payload = view[:msg.length]
        p.message = msg

    def _take_queued(self, source, tag_lo, tag_hi, members, remove=True):
        queue = self._queue
        for i in range(len(queue)):
            msg = queue[i]
            if source is None:
                if members is not None and msg.source not in members:
                    continue
            elif msg.source != source:
                continue
            if tag_lo <= msg.tag <= tag_hi:
                if remove:
                    del queue[i]
                return msg
        return None

    def _failure(self, source, members):
        """Why a receive from `source` can never be satisfied now, or None."""
        if self._aborted is not None:
            return JobAborted(self._aborted)
        if source is not None:
            if source == self.id:
                return None
            broken = self._broken.get(source)
            if broken is not None:
                return broken
            if source in self._exited and self._open.get(source, 0) <= 0:
                return PeerExited(source, self._exited[source])
            return None
        others = [r for r in (range(self.count) if members is None else members) if r != self.id]
        if not others:
            return None
        for r in others:
            if r not in self._broken and not (r in self._exited and self._open.get(r, 0) <= 0):
                return None
        for r in others:
            if r in self._broken:
                return self._broken[r]
        return PeerExited(None, None)

    def _fail_hopeless(self):
        self._epoch += 1
        if not self._posted:
            return
        keep = []
        for p in self._posted:
            error = self._failure(p.source, p.members)
            if error is None:
                keep.append(p)
            else:
                p.error = error
        self._posted = keep

    # ------------------------------------------------------------------ receiving

    def recv(self, source, tag_lo, tag_hi, into=None, block=True, members=None):
        """The first message from `source` (None: any rank in `members`) with tag_lo <= tag <= tag_hi."""
        msg = self._take_queued(source, tag_lo, tag_hi, members)
        if msg is None:
            if not block:
                self._progress(0)
                msg = self._take_queued(source, tag_lo, tag_hi, members)
                if msg is None:
                    error = self._failure(source, members)
                    if error is not None:
                        raise error
                    return None
            elif into is None:
                # Nothing to read into: wait for the message to be queued (no posted receive needed).
                msg = self._wait_queued(source, tag_lo, tag_hi, members)
            else:
                p = self.post(source, tag_lo, tag_hi, into, members)
                try:
                    return self.wait(p)
                except BaseException:
                    self.cancel(p)
                    raise
        if into is not None:
            view = _fit_into(into, msg.length, msg.source)
            view[:msg.length] = msg.payload
            msg.payload = view[:msg.length]
        return msg

    def _wait_queued(self, source, tag_lo, tag_hi, members):
        """Progress until a matching message is queued, and take it. Reads the sockets in a tight loop
        for up to DISTR_SPIN_USEC (default 50 µs) after the last bytes came, then blocks in poll."""
        error = self._failure(source, members)
        if error is not None:
            raise error
        epoch = self._epoch
        poll = self._poll.poll
        clock = time.perf_counter
        spin_until = clock() + self._spin
        while True:
            try:
                events = poll(0 if clock() < spin_until else -1)
            except InterruptedError:
                events = None
            if events:
                self._dispatch(events)
                msg = self._take_queued(source, tag_lo, tag_hi, members)
                if msg is not None:
                    return msg
                spin_until = clock() + self._spin
            if self._epoch != epoch:
                epoch = self._epoch
                error = self._failure(source, members)
                if error is not None:
                    raise error

    def probe(self, source, tag_lo, tag_hi, block=True, members=None):
        """Like recv, but leaves the message queued (it is returned once complete)."""
        while True:
            msg = self._take_queued(source, tag_lo, tag_hi, members, remove=False)
            if msg is not None:
                return msg
            error = self._failure(source, members)
            if error is not None:
                raise error
            if not block:
                self._progress(0)
                msg = self._take_queued(source, tag_lo, tag_hi, members, remove=False)
                if msg is None and self._failure(source, members) is not None:
                    raise self._failure(source, members)
                return msg
            self._wait_step(lambda: self._take_queued(source, tag_lo, tag_hi, members, remove=False) is not None)

    def post(self, source, tag_lo, tag_hi, into=None, members=None):
        """A nonblocking receive: complete at once if a queued message matches, else waiting in posting order."""
        p = PostedReceive(source, tag_lo, tag_hi, into, members)
        msg = self._take_queued(source, tag_lo, tag_hi, members)
        if msg is not None:
            self._give(p, msg)
            return p
        # A message whose payload is still arriving (no receive was waiting when its header came):
        # take it over, and read the rest of it straight into `into`.
        for conn in self._incoming.values():
            msg = conn.msg
            if msg is not None and conn.claimant is None and p.matches(msg.source, msg.tag):
                conn.claimant = p
                p._claimed = conn
                if into is not None:
                    try:
                        target = _fit_into(into, msg.length, msg.source)[:msg.length]
                    except DistrError as error:
                        p.error = error  # the message is still read, then dropped
                    else:
                        target[:conn.filled] = conn.target[:conn.filled]
                        conn.target = target
                return p
        error = self._failure(source, members)
        if error is not None:
            p.error = error
            return p
        self._posted.append(p)
        return p

    def _finish(self, p):
        if p.error is not None:
            error = p.error
            raise error
        return p.message

    def test(self, posted):
        """True when `posted` is complete (one nonblocking progress pass first)."""
        if not posted.done:
            self._progress(0)
        if posted.error is not None:
            raise posted.error
        return posted.message is not None

    def wait(self, posted):
        """Blocks until `posted` is complete and returns its Message; raises like recv."""
        while not posted.done:
            self._wait_step(lambda: posted.done)
        return self._finish(posted)

    def wait_any(self, posted_list):
        """Blocks until one of `posted_list` is complete; returns its index (raises if that one failed)."""
        while True:
            for i, p in enumerate(posted_list):
                if p.done:
                    if p.error is not None:
                        raise p.error
                    return i
            self._wait_step(lambda: any(p.done for p in posted_list))

    def cancel(self, posted):
        """Withdraws a posted receive that has not completed (a message it began taking goes to the queue)."""
        if posted.done:
            return
        if posted in self._posted:
            self._posted.remove(posted)
        conn = posted._claimed
        if conn is not None and conn.claimant is posted:
            if posted.into is not None:
                target = memoryview(bytearray(conn.msg.length))
                target[:conn.filled] = conn.target[:conn.filled]
                conn.target = target
            conn.claimant = None
        posted._claimed = None
        posted.error = DistrError("the receive was cancelled")

    def _wait_step(self, ready):
        """Progress until `ready()` or a short spin runs out, then one blocking pass."""
        if self._spin > 0:
            deadline = time.perf_counter() + self._spin
            while True:
                self._progress(0)
                if ready():
                    return
                if time.perf_counter() > deadline:
                    break
        self._progress(-1)

    # ------------------------------------------------------------------ sending

    def next_collective_call(self, context=0):
        """k for the k-th collective call (k = 0, 1, ...) on communicator `context` (docs/messages.md §5)."""
        k = self._collective_calls.get(context, 0)
        self._collective_calls[context] = k + 1
        return k

    def send(self, dest, tag, encoding, element, fingerprint, payload):
        """Sends one frame; returns when all of it is in the kernel (reading incoming data meanwhile)."""
        kind = type(payload)
        view = payload if kind is bytes or kind is bytearray else _byte_view(payload)
        length = len(view)
        if dest == self.id:
            self._deliver(Message(dest, tag, encoding, element, fingerprint, bytes(view), length))
            return
        if not 0 <= dest < self.count:
            raise DistrError("rank %d does not exist: this job has ranks 0...%d" % (dest, self.count - 1))
        sock = self._links.get(dest)
        if sock is None:
            sock = self._connect(dest)
        header = _HEADER.pack(_KIND_MESSAGE, encoding, element, 0, fingerprint, tag, length)
        if length <= _SMALL_SEND:
            data = header + view if kind is bytes else header + bytes(view)
            try:
                n = sock.send(data, _NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as error:
                raise self._send_error(dest, error) from None
            if n == len(data):
                return
            self._send_rest(dest, sock, [memoryview(data)[n:]])
            return
        self._send_rest(dest, sock, [memoryview(header), view])

    def _send_rest(self, dest, sock, parts):
        fd = sock.fileno()
        registered = False
        try:
            while parts:
                try:
                    n = sock.sendmsg(parts, [], _NOSIGNAL)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError as error:
                    raise self._send_error(dest, error) from None
                while n and parts:
                    if n >= len(parts[0]):
                        n -= len(parts[0])
                        parts.pop(0)
                    else:
                        parts[0] = parts[0][n:]
                        n = 0
                if not parts:
                    return
                if self._aborted is not None:
                    raise JobAborted(self._aborted)
                if not registered:
                    self._poll.register(fd, select.POLLOUT)
                    registered = True
                # Wait for room, reading every incoming connection meanwhile.
                self._progress(-1)
        finally:
            if registered:
                self._poll.unregister(fd)

    def _send_error(self, dest, error):
        if dest in self._exited:
            return PeerExited(dest, self._exited[dest])
        if self._aborted is not None:
            return JobAborted(self._aborted)
        return DistrError("sending to rank %d failed: %s" % (dest, error))

    def _connect(self, dest):
        _, host, port, worker, label = self._placements[dest]
        if worker == self._worker:
            # Same worker: it makes a socket pair and hands us one end over the agent channel.
            self._agent.sendmsg([b"\x03" + struct.pack(">q", dest)])
            while dest not in self._local_answers:
                if self._aborted is not None:
                    raise JobAborted(self._aborted)
                self._progress(-1)
            answer = self._local_answers.pop(dest)
            if isinstance(answer, DistrError):
                raise answer
            sock = answer
        else:
            sock = self._dial(dest, host, port, label)
        sock.setblocking(False)
        self._links[dest] = sock
        return sock

    def _dial(self, dest, host, port, label):
        """A TCP connection to `dest` through its worker's port (the rank handshake of docs/protocol.md)."""
        try:
            sock = _connect_tcp(host, port, 10)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            context = _string(self.job_id) + struct.pack(">qq", self.id, dest)
            nonce = os.urandom(32)
            sock.sendall(b"DSTR" + struct.pack(">HB", PROTOCOL_VERSION, 2) + nonce + struct.pack(">H", len(context)) + context)
            reply = _read_exact(sock, 71)
            if reply is None or reply[:4] != b"DSTR":
                raise DistrError("cannot connect to rank %d via %s: the worker did not answer the handshake" % (dest, label))
            if reply[6] != 0:
                raise DistrError("cannot connect to rank %d via %s: the worker refused (status %d)" % (dest, label, reply[6]))
            transcript = b"\x02" + struct.pack(">I", len(context)) + context + nonce + reply[7:39]
            expected = hmac_sha256(self._key, b"distr server proof" + transcript)
            if not _compare_digest(expected, reply[39:71]):
                raise DistrError("cannot connect to rank %d via %s: the worker does not hold the job key" % (dest, label))
            sock.sendall(hmac_sha256(self._key, b"distr client proof" + transcript))
            # 1: accepted; 2: accepted, and the target answers a "both ways" signal, which this
            # module never sends (docs/messages.md §2): its connections stay one-way.
            if _read_exact(sock, 1) not in (b"\x01", b"\x02"):
                raise DistrError("cannot connect to rank %d via %s: the worker refused the connection" % (dest, label))
            return sock
        except OSError as error:
            raise DistrError("cannot connect to rank %d via %s: %s" % (dest, label, error)) from None

    def flush(self):
        """Everything sent has reached the kernel (sends are synchronous, so there is nothing to wait for)."""

    def close(self):
        """Ends this rank's outgoing connections (receivers see end of stream)."""
        for sock in self._links.values():
            try:
                sock.shutdown(_socket.SHUT_WR)
            except OSError:
                pass  # the receiver is gone already
        self._links.clear()


class _Reader:
    """Reads the fields of one agent message (big-endian)."""

    __slots__ = ("raw", "offset")

    def __init__(self, raw, offset=0):
        self.raw = raw
        self.offset = offset

    def take(self, n):
        if n < 0 or self.offset + n > len(self.raw):
            raise DistrError("the agent channel from distr-worker is unusable: a message from the worker ended early")
        out = self.raw[self.offset:self.offset + n]
        self.offset += n
        return out

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        return self.take(self.u32()).decode("utf-8", "replace")

    def data(self):
        return self.take(self.u32())


def _string(text):
    data = text.encode()
    return struct.pack(">I", len(data)) + data


# A rank that dials another worker connects and proves the job key without the modules a
# program would usually use for it: importing `socket` (selectors, enum), `hashlib` and `hmac`
# (which load OpenSSL), and the idna codec that getaddrinfo loads for a host name given as str,
# took about 11 ms of CPU per rank at start, more than `import distr` itself now does.


def _connect_tcp(host, port, timeout):
    """socket.create_connection((host, port), timeout) on the C module: each address in turn."""
    try:
        name = host.encode("ascii")  # bytes: getaddrinfo needs no idna codec for them
    except UnicodeEncodeError:
        name = host
    failure = None
    for family, kind, proto, _, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as error:
            sock.close()
            failure = error
    if failure is None:
        raise OSError("getaddrinfo returns an empty list")
    try:
        raise failure
    finally:
        failure = None  # its traceback holds this frame: no cycle through the local


_sha256_new = None  # SHA-256's constructor, looked up on first use


def _sha256_constructor():
    global _sha256_new
    if _sha256_new is None:
        try:
            try:
                from _sha2 import sha256  # Python's own SHA-256, 3.12 on
            except ImportError:
                from _sha256 import sha256  # the same, up to 3.11
            sha256(b"")  # a build that blocks its own hashes (FIPS) may refuse only here
        except (ImportError, ValueError):
            from hashlib import sha256  # a Python built without them, or refusing them
        _sha256_new = sha256
    return _sha256_new


def hmac_sha256(key, data):
    """HMAC-SHA-256 (RFC 2104): the same digest as hmac.new(key, data, hashlib.sha256).digest()."""
    sha256 = _sha256_constructor()
    if len(key) > 64:
        key = sha256(key).digest()
    key = bytes(key).ljust(64, b"\0")
    inner = sha256(key.translate(_IPAD) + data).digest()
    return sha256(key.translate(_OPAD) + inner).digest()


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def _read_exact(sock, n):
    chunks, left = [], n
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


_world = None


def world():
    """This process's Transport (joined on first call).

    Raises DistrError when the program was not started by distr-master.
    """
    global _world
    if _world is None:
        _world = Transport()
    return _world
