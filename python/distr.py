"""A small Python client for distr's rank messages (docs/messages.md).

    from distr import Node
    node = Node.join()
    node.send("hello", to=(node.id + 1) % node.count)
    text = node.recv(source=(node.id - 1) % node.count, kind=str)

Values: str, int, float, bool and lists of them travel in the binary Codable encoding (so a
Swift rank receives them as String, Int, Double, Bool, [String]...); array.array and bytes travel
as numeric arrays and raw bytes. Standard library only.
"""
import array
import hashlib
import hmac
import os
import socket
import struct
import threading

ANY = None
_CODES = {"d": 1, "f": 2, "q": 4, "i": 5, "h": 6, "b": 7, "Q": 9, "I": 10, "H": 11, "B": 12}
_TYPECODES = {1: "d", 2: "f", 3: "q", 4: "q", 5: "i", 6: "h", 7: "b", 8: "Q", 9: "Q", 10: "I", 11: "H", 12: "B"}


class DistrError(RuntimeError):
    pass


class _Reader:
    def __init__(self, data):
        self.data, self.offset = data, 0

    def take(self, n):
        if n < 0 or self.offset + n > len(self.data):
            raise DistrError("message ended early")
        out = self.data[self.offset:self.offset + n]
        self.offset += n
        return out

    def u8(self): return self.take(1)[0]
    def u32(self): return struct.unpack(">I", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]
    def string(self): return self.take(self.u32()).decode()
    def data_(self): return self.take(self.u32())


def _w_string(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def _encode(value):
    """The binary Codable encoding of str/int/float/bool and lists of them."""
    if isinstance(value, bool):
        return bytes([1 if value else 0])
    if isinstance(value, int):
        return struct.pack("<q", value)
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, str):
        b = value.encode()
        return struct.pack("<I", len(b)) + b
    if isinstance(value, (list, tuple)):
        return struct.pack("<I", len(value)) + b"".join(_encode(v) for v in value)
    raise DistrError(f"cannot encode {type(value).__name__}; use str, int, float, bool, lists, bytes or array.array")


def _decode(kind, data):
    if kind is str:
        (n,) = struct.unpack_from("<I", data)
        return data[4:4 + n].decode()
    if kind is int:
        return struct.unpack("<q", data)[0]
    if kind is float:
        return struct.unpack("<d", data)[0]
    if kind is bool:
        return data[0] == 1
    return data


class Node:
    _current = None

    def __init__(self):
        env = os.environ
        for name in ("DISTR_NODE_ID", "DISTR_N_NODE", "DISTR_AGENT_FD"):
            if name not in env:
                raise DistrError(f"this program must be launched by distr-master: {name} is not set")
        self.id, self.count = int(env["DISTR_NODE_ID"]), int(env["DISTR_N_NODE"])
        self._agent = socket.socket(fileno=int(env["DISTR_AGENT_FD"]))
        self._lock = threading.Condition()
        self._queue, self._exited, self._open, self._aborted = [], {}, {}, None
        self._links, self._pending_local = {}, {}
        self._agent.sendmsg([bytes([1]) + struct.pack(">q", self.id)])
        early = []
        while True:
            message, fd = self._agent_receive()
            if message is None:
                raise DistrError("the worker closed the agent channel")
            if message.data[0] == 2:
                break
            early.append((message, fd))
        r = message
        r.u8()
        self.job_id, self._key, self._worker = r.string(), r.data_(), r.i64()
        self._placements = []
        for _ in range(r.u32()):
            self._placements.append((r.i64(), r.string(), r.i64(), r.i64(), r.string()))
        for message, fd in early:
            self._handle(message, fd)
        threading.Thread(target=self._agent_loop, daemon=True).start()

    @classmethod
    def join(cls):
        if cls._current is None:
            cls._current = cls()
        return cls._current

    # -- agent channel
    def _agent_receive(self):
        data, ancillary, _, _ = self._agent.recvmsg(4 << 20, socket.CMSG_SPACE(4))
        if not data:
            return None, -1
        fd = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fd = struct.unpack("i", payload[:4])[0]
        return _Reader(data), fd

    def _agent_loop(self):
        while True:
            message, fd = self._agent_receive()
            if message is None:
                break
            self._handle(message, fd)
        with self._lock:
            self._aborted = self._aborted or "the worker closed the agent channel"
            self._lock.notify_all()

    def _handle(self, r, fd):
        kind = r.u8()
        if kind == 5:  # incoming
            source = r.i64()
            with self._lock:
                self._open[source] = self._open.get(source, 0) + 1
            threading.Thread(target=self._read_loop, args=(socket.socket(fileno=fd), source), daemon=True).start()
        elif kind == 4:  # connected
            to, error = r.i64(), r.string()
            with self._lock:
                self._pending_local[to] = socket.socket(fileno=fd) if fd >= 0 else DistrError(error)
                self._lock.notify_all()
        elif kind == 6:  # peerExited
            rank, status = r.i64(), struct.unpack(">i", r.take(4))[0]
            with self._lock:
                self._exited[rank] = status
                self._lock.notify_all()
        elif kind == 7:  # abort
            with self._lock:
                self._aborted = r.string()
                self._lock.notify_all()

    # -- receiving
    @staticmethod
    def _read_exact(sock, n):
        chunks, left = [], n
        while left:
            chunk = sock.recv(min(left, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _read_loop(self, sock, source):
        while True:
            header = self._read_exact(sock, 24)
            if header is None or header[0] != 1:
                break
            _, encoding, element, _, _, tag, length = struct.unpack(">BBBBIqQ", header)
            payload = self._read_exact(sock, length) if length else b""
            if payload is None:
                break
            with self._lock:
                self._queue.append((source, tag, encoding, element, payload))
                self._lock.notify_all()
        sock.close()
        with self._lock:
            self._open[source] -= 1
            self._lock.notify_all()

    def _gone(self, rank):
        return rank in self._exited and self._open.get(rank, 0) == 0

    def recv_message(self, source=ANY, tag=ANY, kind=None):
        """Returns (value, source, tag). kind: str, int, float, bool, or None for raw payloads."""
        with self._lock:
            while True:
                for i, (s, t, encoding, element, payload) in enumerate(self._queue):
                    if (source is None or s == source) and (t == tag if tag is not None else t >= 0):
                        del self._queue[i]
                        if encoding == 2:
                            value = array.array(_TYPECODES[element])
                            value.frombytes(payload)
                        elif encoding == 1:
                            value = _decode(kind, payload)
                        else:
                            value = payload
                        return value, s, t
                if self._aborted:
                    raise DistrError(f"the job is being ended: {self._aborted}")
                if source is not None and source != self.id and self._gone(source):
                    raise DistrError(f"rank {source} has exited (status {self._exited[source]}) and no matching message from it is pending")
                if source is None and all(self._gone(r) for r in range(self.count) if r != self.id) and self.count > 1:
                    raise DistrError("every other rank has exited and no matching message is pending")
                self._lock.wait()

    def recv(self, source=ANY, tag=ANY, kind=None):
        return self.recv_message(source, tag, kind)[0]

    # -- sending
    def _link(self, rank):
        if rank in self._links:
            return self._links[rank]
        _, host, port, worker, label = self._placements[rank]
        if worker == self._worker:
            self._agent.sendmsg([bytes([3]) + struct.pack(">q", rank)])
            with self._lock:
                while rank not in self._pending_local:
                    self._lock.wait()
                result = self._pending_local.pop(rank)
            if isinstance(result, Exception):
                raise result
            sock = result
        else:
            sock = socket.create_connection((host, port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            context = _w_string(self.job_id) + struct.pack(">qq", self.id, rank)
            nonce = os.urandom(32)
            sock.sendall(b"DSTR" + struct.pack(">HB", 2, 2) + nonce + struct.pack(">H", len(context)) + context)
            reply = self._read_exact(sock, 71)
            if reply is None or reply[:4] != b"DSTR" or reply[6] != 0:
                raise DistrError(f"cannot connect to rank {rank} via {label}: refused")
            transcript = bytes([2]) + struct.pack(">I", len(context)) + context + nonce + reply[7:39]
            expected = hmac.new(self._key, b"distr server proof" + transcript, hashlib.sha256).digest()
            if not hmac.compare_digest(expected, reply[39:71]):
                raise DistrError(f"cannot connect to rank {rank}: the worker does not hold the job key")
            sock.sendall(hmac.new(self._key, b"distr client proof" + transcript, hashlib.sha256).digest())
            if self._read_exact(sock, 1) != b"\x01":
                raise DistrError(f"cannot connect to rank {rank}: refused")
            sock.settimeout(None)
        self._links[rank] = sock
        return sock

    def send(self, value, to, tag=0):
        if not 0 <= to < self.count:
            raise DistrError(f"rank {to} does not exist: this job has ranks 0...{self.count - 1}")
        if tag < 0:
            raise DistrError(f"tag {tag} is not allowed: user tags are 0 or more")
        if isinstance(value, (bytes, bytearray)):
            encoding, element, payload = 0, 0, bytes(value)
        elif isinstance(value, array.array):
            encoding, element, payload = 2, _CODES[value.typecode], value.tobytes()
        else:
            encoding, element, payload = 1, 0, _encode(value)
        header = struct.pack(">BBBBIqQ", 1, encoding, element, 0, 0, tag, len(payload))
        if to == self.id:
            with self._lock:
                self._queue.append((self.id, tag, encoding, element, payload))
                self._lock.notify_all()
            return
        self._link(to).sendall(header + payload)

    def leave(self):
        for sock in self._links.values():
            sock.shutdown(socket.SHUT_WR)
