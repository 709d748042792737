@preconcurrency import Glibc
import Synchronization

/// An authenticated, integrity-protected stream of typed frames over a socket.
///
/// Sending is safe from any thread (a frame is sealed and written under one lock, so sequence
/// numbers match wire order). Receiving is meant for one reader thread at a time.
public final class Connection: Sendable {
    public let fd: Int32
    public let peer: String
    private let sender: Mutex<FrameSealer>
    private let receiver: Mutex<(sealer: FrameSealer, decoder: FrameDecoder, scratch: [UInt8])>
    private let closed = Atomic<Bool>(false)

    init(fd: Int32, peer: String, keys: SessionKeys, maxPayload: Int, headerOnlyTypes: Set<UInt8>) {
        self.fd = fd
        self.peer = peer
        let sealer = FrameSealer(keys: keys, headerOnlyTypes: headerOnlyTypes)
        sender = Mutex(sealer)
        receiver = Mutex((sealer, FrameDecoder(maxPayload: maxPayload), [UInt8](repeating: 0, count: 256 * 1024)))
    }

    deinit { if !closed.load(ordering: .acquiring) { FD.close(fd) } }

    /// Closes the socket once; later sends and receives fail.
    public func close() {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) {
            shutdown(fd, Int32(SHUT_RDWR))
            FD.close(fd)
        }
    }

    public func send(type: UInt8, payload: [UInt8]) throws(SystemError) {
        let result = payload.withUnsafeBytes { buffer in Result { () throws(SystemError) in try send(type: type, payload: buffer) } }
        try result.get()
    }

    public func send(type: UInt8, payload: UnsafeRawBufferPointer) throws(SystemError) {
        let result = sender.withLock { sealer in
            let frame = sealer.seal(type: type, payload: payload)
            return Result { () throws(SystemError) in try FD.writeAll(fd, frame) }
        }
        try result.get()
    }

    /// The next frame, authenticated. Blocks.
    /// - Throws: `WireError.closed` at end of stream, `WireError.badMAC` on a forged frame,
    ///   `WireError.frameTooLarge`, or a `SystemError` from `read`.
    public func receive() throws -> (type: UInt8, payload: [UInt8]) {
        try receiver.withLock { state in
            while true {
                if let frame = try state.decoder.next() {
                    try state.sealer.open(frame)
                    return (frame.type, frame.payload)
                }
                let n = try FD.read(fd, into: &state.scratch)
                if n == 0 { throw WireError.closed }
                state.scratch.withUnsafeBytes { state.decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
        }
    }
}

extension Connection {
    /// Reads exactly `count` bytes during the handshake (bounded by the socket's receive timeout).
    static func readExact(_ fd: Int32, _ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = try out.withUnsafeMutableBytes { try FD.read(fd, into: $0.baseAddress! + offset, count: count - offset) }
            if n == 0 { throw WireError.closed }
            offset += n
        }
        return out
    }

    /// Runs the client side of the handshake on a connected socket and returns the connection.
    /// The socket is closed on failure.
    /// - Throws: `WireError` (not distr, version, wrong secret, refused) or `SystemError`.
    public static func client(
        fd: Int32, peer: String, key: [UInt8], kind: ConnectionKind, context: [UInt8] = [],
        timeout: Double, maxPayload: Int = Limits.default.maxFrame, headerOnlyTypes: Set<UInt8> = []
    ) throws -> Connection {
        let keys = try clientHandshake(fd: fd, key: key, kind: kind, context: context, timeout: timeout)
        return Connection(fd: fd, peer: peer, keys: keys, maxPayload: maxPayload, headerOnlyTypes: headerOnlyTypes)
    }

    /// The client side of the handshake on a raw socket, up to and including the verdict.
    /// The socket is closed on failure.
    public static func clientHandshake(
        fd: Int32, key: [UInt8], kind: ConnectionKind, context: [UInt8], timeout: Double
    ) throws -> SessionKeys {
        do {
            TCPSocket.setReceiveTimeout(fd, seconds: timeout)
            let handshake = Handshake.Client(key: key, kind: kind, context: context)
            try FD.writeAll(fd, handshake.hello.encoded())
            let reply = try readExact(fd, Handshake.replySize)
            let (proof, keys) = try handshake.finish(reply: reply)
            try FD.writeAll(fd, proof)
            let verdict = try readExact(fd, 1)
            guard verdict == [1] else { throw WireError.authenticationFailed("the worker rejected this key") }
            TCPSocket.setReceiveTimeout(fd, seconds: 0)
            return keys
        } catch let error as SystemError where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
            FD.close(fd)
            throw WireError.authenticationFailed("no handshake answer within \(timeout) s")
        } catch WireError.closed {
            FD.close(fd)
            throw WireError.authenticationFailed("the peer closed the connection during the handshake (wrong key, or not a distr worker)")
        } catch {
            FD.close(fd)
            throw error
        }
    }

    /// Runs the server side up to (not including) the verdict byte. `key` picks the key for the
    /// hello (nil: refuse as unknown job). The caller sends the verdict with `accept(fd:)` once it
    /// has done whatever must precede it.
    public static func serverHandshake(
        fd: Int32, timeout: Double, key: (Handshake.Hello) -> [UInt8]?
    ) throws -> (hello: Handshake.Hello, keys: SessionKeys) {
        TCPSocket.setReceiveTimeout(fd, seconds: timeout)
        let preamble = try readExact(fd, 6)
        var hello: Handshake.Hello
        let contextLength: Int
        do {
            try Handshake.Hello.checkPreamble(preamble)
            let fixed = preamble + (try readExact(fd, Handshake.helloFixedSize - 6))
            (hello, contextLength) = try Handshake.Hello.parseFixed(fixed)
        } catch WireError.versionMismatch(let theirs, let ours) {
            try? FD.writeAll(fd, Handshake.Server.refusal(.versionMismatch))
            throw WireError.versionMismatch(theirs: theirs, ours: ours)
        }
        hello.context = try readExact(fd, contextLength)
        guard let chosen = key(hello) else {
            try? FD.writeAll(fd, Handshake.Server.refusal(.unknownJob))
            throw WireError.refused("unknown job or rank in a rank connection request")
        }
        let server = Handshake.Server(key: chosen, hello: hello)
        try FD.writeAll(fd, server.reply)
        let proof = try readExact(fd, 32)
        let keys = try server.verify(proof: proof)
        return (hello, keys)
    }

    /// Sends the verdict that completes a server handshake and wraps the socket.
    public static func accept(
        fd: Int32, peer: String, keys: SessionKeys, maxPayload: Int = Limits.default.maxFrame,
        headerOnlyTypes: Set<UInt8> = []
    ) throws -> Connection {
        try FD.writeAll(fd, [1])
        TCPSocket.setReceiveTimeout(fd, seconds: 0)
        return Connection(fd: fd, peer: peer, keys: keys, maxPayload: maxPayload, headerOnlyTypes: headerOnlyTypes)
    }
}
