import Synchronization

/// A file that could not be read while a frame was sent from it (`Connection.sendFromFiles`):
/// the index of its piece, and the error.
package struct FileReadFailure: Error {
    package let piece: Int
    package let error: SystemError
}

/// An authenticated, integrity-protected stream of typed frames over a socket.
///
/// Sending is safe from any thread (a frame is sealed and written under one lock, so sequence
/// numbers match wire order). Receiving is meant for one reader thread at a time. A peer may be
/// silent between frames for as long as the caller allows, but once a frame has begun it must
/// be complete within `frameTimeout` seconds: a peer that stops mid-frame cannot hold a thread
/// and a descriptor for ever.
package final class Connection: Sendable {
    package let fd: Int32
    package let peer: String
    let frameTimeout: Double
    private let keys: SessionKeys
    let sender: Mutex<FrameSealer>
    private let receiver: Mutex<(sealer: FrameSealer, decoder: FrameDecoder)>
    /// Who is using the descriptor: `close` shuts the socket down at once (waking a thread
    /// blocked on it) but releases the number only once no call is using it, so that none of
    /// them ever reaches a file that was given the number afterwards.
    private let descriptor = Mutex(DescriptorUse())
    /// Heartbeat bookkeeping once `watch` has been called (nil: the peer may be silent for ever).
    let liveness = Mutex<Liveness?>(nil)
    /// Opened by `close` or `abort`: the heartbeat thread stops.
    let ended = Latch()

    init(fd: Int32, peer: String, keys: SessionKeys, maxPayload: Int, headerOnlyTypes: Set<UInt8>, frameTimeout: Double) {
        self.fd = fd
        self.peer = peer
        self.keys = keys
        self.frameTimeout = frameTimeout
        let sealer = FrameSealer(keys: keys, headerOnlyTypes: headerOnlyTypes)
        sender = Mutex(sealer)
        // Frames are read straight into the decoder's buffer, which is left uninitialised: a
        // connection that carries a few small frames touches one page of it, not 1 MiB (a worker
        // makes one per job), and one that carries bulk output reads it in large pieces.
        receiver = Mutex((sealer, FrameDecoder(maxPayload: maxPayload, capacity: Self.readBufferSize)))
    }

    /// The receive buffer's first size (it grows for a frame that does not fit).
    static let readBufferSize = 1 << 20
    /// The least room a read is given.
    static let minimumRead = 64 * 1024

    deinit { if !descriptor.withLock({ $0.released }) { FD.close(fd) } }

    /// Closes the socket once; later sends and receives fail. A send or receive under way on
    /// another thread is woken (the socket is shut down) and the descriptor is released when it
    /// has returned.
    package func close() {
        ended.open()
        descriptor.withLock { state in
            guard !state.closing else { return }
            state.closing = true
            try? Socket.shutdown(fd, .both)  // Wakes blocked calls; ENOTCONN: the peer has gone already.
            if state.users == 0 { state.release(fd) }
        }
    }

    /// Keeps the descriptor open until the matching `endUsing`; false once `close` has begun.
    private func beginUsing() -> Bool {
        descriptor.withLock { state in
            if !state.closing { state.users += 1 }
            return !state.closing
        }
    }

    private func endUsing() {
        descriptor.withLock { state in
            state.users -= 1
            if state.closing && state.users == 0 { state.release(fd) }
        }
    }

    /// Runs `body` with the descriptor kept open; nil once `close` has begun.
    func usingDescriptor<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R? {
        guard beginUsing() else { return nil }
        defer { endUsing() }
        return try body()
    }

    /// Runs a send's system calls with the descriptor kept open; once `close` has begun they
    /// fail as writes to a shut-down socket do (`EPIPE`).
    private func sending(_ body: () throws(SystemError) -> Void) throws(SystemError) {
        guard try usingDescriptor(body) != nil else { throw SystemError("write", errno: Errno.brokenPipe.rawValue) }
    }

    /// Breaks the connection without releasing the descriptor: threads blocked reading or
    /// writing it return at once (with an error or end of stream). `close` still follows.
    /// Whether the peer has closed its end (or the connection was ended or given up as silent
    /// here), seen without reading: for a side that is not reading now.
    package var peerHasLeft: Bool { ended.isOpen || usingDescriptor { TCPSocket.peerHasClosed(fd) } ?? true }

    package func abort() {
        ended.open()
        descriptor.withLock { state in
            if !state.closing { try? Socket.shutdown(fd, .both) }  // ENOTCONN: already broken, which is what abort wants.
        }
    }

    /// Watches the peer: from now on `receive` fails with `WireError.silent` when nothing
    /// arrives for `timeout` seconds, unacknowledged data fails the socket in that time
    /// (`TCP_USER_TIMEOUT`), and the process's heartbeat thread (`HeartbeatThread`, one for all
    /// connections) sends a `heartbeatType` frame every `Liveness.interval` and breaks the
    /// connection (`abort`) when the peer has been silent too long, so that a thread blocked
    /// writing to a frozen peer is released even when no one is reading.
    package func watch(timeout: Double, heartbeatType: UInt8) {
        watch(timeout: timeout, heartbeatType: heartbeatType, on: .shared)
    }

    /// Ends the sending direction (the peer reads end of stream after the last frame).
    func finishSending() {
        _ = usingDescriptor { try? Socket.shutdown(fd, .write) }  // ENOTCONN: the peer has gone, and there is no one to tell.
    }

    package func send(type: UInt8, payload: [UInt8]) throws(SystemError) {
        let result = payload.withUnsafeBytes { buffer in Result { () throws(SystemError) in try send(type: type, payload: buffer) } }
        try result.get()
    }

    package func send(type: UInt8, payload: UnsafeRawBufferPointer) throws(SystemError) {
        let result = sender.withLock { sealer in
            let frame = sealer.seal(type: type, payload: payload)
            return Result { () throws(SystemError) in try sending { () throws(SystemError) in try FD.writeAll(fd, frame) } }
        }
        try result.get()
    }

    /// Sends a frame built in place (see `FrameSealer.sealInPlace`): `frame` has room for the
    /// header before the `payloadCount` payload bytes and for the MAC after them.
    package func sendInPlace(type: UInt8, frame: UnsafeMutableRawBufferPointer, payloadCount: Int) throws(SystemError) {
        let result = sender.withLock { sealer in
            let size = sealer.sealInPlace(type: type, frame: frame, payloadCount: payloadCount)
            return Result { () throws(SystemError) in
                try sending { () throws(SystemError) in try FD.writeAll(fd, UnsafeRawBufferPointer(rebasing: frame[0..<size])) }
            }
        }
        try result.get()
    }

    /// Sends one frame of a header-only type (its payload is not part of the MAC) whose payload
    /// the kernel takes from files (`sendfile`): the bytes never pass through this process, and
    /// reach the socket without a copy. A file the kernel cannot send from (`EINVAL` or `ENOSYS`:
    /// some FUSE and special file systems) is read and written instead. The frame is corked, so
    /// it leaves in full segments. A file that ends before its piece does (it shrank) has the
    /// rest of its piece sent as zeros, so the stream stays whole, and is reported after the frame.
    /// - Returns: the index in `pieces` of the first piece whose file ended early, or nil.
    /// - Throws: `SystemError` from writing to the socket; `(SystemError, piece index)` from
    ///   reading a file is returned as `.failure`.
    package func sendFromFiles(
        type: UInt8, pieces: [(fd: Int32, offset: Int, count: Int)]
    ) throws(SystemError) -> Result<Int?, FileReadFailure> {
        let total = pieces.reduce(0) { $0 + $1.count }
        let result = sender.withLock { sealer in
            var header = [UInt8](repeating: 0, count: FrameDecoder.headerSize)
            var mac = [UInt8](repeating: 0, count: FrameDecoder.macSize)
            header.withUnsafeMutableBytes { header in
                mac.withUnsafeMutableBytes { sealer.sealAround(type: type, payloadCount: total, header: header, mac: $0) }
            }
            return Result { () throws(SystemError) -> Result<Int?, FileReadFailure> in
                guard beginUsing() else { throw SystemError("write", errno: Errno.brokenPipe.rawValue) }
                defer { endUsing() }
                TCPSocket.setCorked(fd, true)
                defer { TCPSocket.setCorked(fd, false) }
                try FD.writeAll(fd, header)
                var outcome: Result<Int?, FileReadFailure> = .success(nil)
                // For pieces the kernel cannot send from their file: made at the first.
                var copyBuffer: UnsafeMutableRawBufferPointer?
                defer { copyBuffer?.deallocate() }
                for (index, piece) in pieces.enumerated() {
                    var sent = 0
                    var copying = false
                    if case .success(nil) = outcome {
                        while sent < piece.count {
                            let n: Int
                            if copying {
                                let buffer = copyBuffer ?? .allocate(byteCount: Self.copyBufferSize, alignment: 16)
                                copyBuffer = buffer
                                do throws(SystemError) {
                                    n = try FD.read(
                                        piece.fd, at: piece.offset + sent, into: buffer.baseAddress.unsafelyUnwrapped,  // Never empty.
                                        count: min(buffer.count, piece.count - sent))
                                } catch {
                                    outcome = .failure(FileReadFailure(piece: index, error: error))
                                    break
                                }
                                try FD.writeAll(fd, UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                            } else {
                                do throws(SystemError) {
                                    n = try FD.sendFile(from: piece.fd, at: piece.offset + sent, count: piece.count - sent, to: fd)
                                } catch {
                                    if error.code == .invalidArgument || error.code == .notImplemented {
                                        // The file cannot be spliced from (an EINVAL of the socket would show on the write).
                                        copying = true
                                        continue
                                    }
                                    // Which side failed is not told by sendfile: the socket's errors show on the next write.
                                    outcome = .failure(FileReadFailure(piece: index, error: error))
                                    break
                                }
                            }
                            if n == 0 {
                                outcome = .success(index)
                                break
                            }
                            sent += n
                        }
                    }
                    if sent < piece.count { try FD.writeAll(fd, [UInt8](repeating: 0, count: piece.count - sent)) }
                }
                try FD.writeAll(fd, mac)
                return outcome
            }
        }
        return try result.get()
    }

    /// The buffer a piece is copied through when its file cannot be sent from (`sendFromFiles`).
    static let copyBufferSize = 64 << 10

    /// Sends frames whose bytes lie in several places: `seal` runs under the send lock (so
    /// sequence numbers follow wire order) and writes the headers and MACs (see
    /// `FrameSealer.seal(_:_:)`), then `pieces` are written in order with `writev`.
    package func send(pieces: [UnsafeRawBufferPointer], sealedBy seal: (inout FrameSealer) -> Void) throws(SystemError) {
        let result = sender.withLock { sealer in
            seal(&sealer)
            return Result { () throws(SystemError) in try sending { () throws(SystemError) in try FD.writeAll(fd, pieces) } }
        }
        try result.get()
    }

    /// The next frame, authenticated. Waits until `idle` for a frame to begin; once one has
    /// begun, at most `frameTimeout` seconds for the rest of it.
    /// - Throws: `WireError.closed` at end of stream, `.badMAC` on a forged frame,
    ///   `.frameTooLarge`, `.stalled` when a deadline passes, or a `SystemError` from `read`.
    package func receive(idle: Deadline = .never) throws -> (type: UInt8, payload: [UInt8]) {
        try receiver.withLock { state in
            var frameDeadline: Deadline?
            while true {
                if let frame = try state.decoder.next() {
                    try state.sealer.open(frame)
                    return (frame.type, frame.payload)
                }
                try readMore(&state.decoder, frameDeadline: &frameDeadline, idle: idle)
            }
        }
    }

    /// Receives the frames that have arrived (waiting for at least one, as `receive` does) and
    /// hands each, authenticated, to `body` in order: its type and its payload where it was
    /// read, valid only during the call. No frame is copied; consecutive frames have their MACs
    /// checked two at a time. Returns after the frames one read brought, so the caller can look
    /// at its own state between batches.
    /// - Throws: as `receive`, and what `body` throws; a forged frame is reported after the
    ///   good frames before it have been handed over.
    package func receiveFrames(idle: Deadline = .never, _ body: (UInt8, UnsafeRawBufferPointer) throws -> Void) throws {
        try receiver.withLock { state in
            var frameDeadline: Deadline?
            var spans: [FrameSpan] = []
            while spans.isEmpty {
                while let span = try state.decoder.nextSpan() { spans.append(span) }
                if spans.isEmpty { try readMore(&state.decoder, frameDeadline: &frameDeadline, idle: idle) }
            }
            try state.decoder.withBuffer { buffer in
                var index = 0
                while index < spans.count {
                    let (payload, mac) = spans[index].parts(in: buffer)
                    guard index + 1 < spans.count else {
                        try state.sealer.open(type: spans[index].type, payload: payload, mac: mac)
                        try body(spans[index].type, payload)
                        return
                    }
                    let (nextPayload, nextMAC) = spans[index + 1].parts(in: buffer)
                    let good = try state.sealer.open(
                        (spans[index].type, payload, mac), (spans[index + 1].type, nextPayload, nextMAC))
                    try body(spans[index].type, payload)
                    guard good == 2 else { throw WireError.badMAC }
                    try body(spans[index + 1].type, nextPayload)
                    index += 2
                }
            }
        }
    }

    /// Waits for more bytes (until `idle` before a frame has begun, `frameTimeout` once one has)
    /// and reads them into `decoder`.
    private func readMore(_ decoder: inout FrameDecoder, frameDeadline: inout Deadline?, idle: Deadline) throws {
        if decoder.bufferedBytes > 0 && frameDeadline == nil { frameDeadline = .after(frameTimeout) }
        let watched = liveness.withLock { $0 }
        let deadline = min(frameDeadline ?? idle, watched.map { Deadline(instant: $0.deadline) } ?? .never)
        guard beginUsing() else { throw WireError.closed }
        defer { endUsing() }
        let readable: Bool
        do { readable = try FD.waitReadable(fd, until: deadline) } catch {
            throw silence(at: Clock.now) ?? error
        }
        guard readable else {
            if let silent = silence(at: Clock.now) { throw silent }
            throw WireError.stalled(
                frameDeadline == nil
                    ? "no message within the time allowed"
                    : "a frame was not completed within \(frameTimeout) s")
        }
        // Room for the rest of a frame that has begun, so a large one arrives in few reads.
        let room = max(Self.minimumRead, (decoder.partialFrameSize ?? 0) - decoder.bufferedBytes)
        let n: Int
        do {
            n = try decoder.fill(minimum: room) { space throws(SystemError) in
                try FD.read(fd, into: space.baseAddress.unsafelyUnwrapped, count: space.count)  // room > 0: never empty.
            }
        } catch {
            // ETIMEDOUT (TCP_USER_TIMEOUT) or a reset after the peer went quiet.
            throw silence(at: Clock.now) ?? error
        }
        if n == 0 { throw silence(at: Clock.now) ?? WireError.closed }
        liveness.withLock { $0?.heard(at: Clock.now) }
    }

    /// `WireError.silent` when the watched peer has been quiet for its timeout (the heartbeat
    /// thread may have broken the connection for that reason); nil otherwise.
    private func silence(at now: Double) -> WireError? {
        guard let watched = liveness.withLock({ $0 }), case .expired(let seconds) = watched.check(at: now) else { return nil }
        return .silent(seconds: seconds)
    }

    /// The one-time pad that wraps a job key for this session and job: HMAC-SHA256 under the
    /// direction's session key. Session keys are fresh for every connection (both nonces), so no
    /// pad is used twice, and XOR with it hides the key from anyone who reads the wire.
    func jobKeyPad(jobID: String, sending: Bool) -> [UInt8] {
        var mac = HMAC(key: sending ? keys.send : keys.receive)
        mac.update(Array("distr job key".utf8))
        mac.update(Array(jobID.utf8))
        return mac.finalize()
    }
}

extension Connection {
    /// Reads exactly `count` bytes, all of them before `deadline`.
    static func readExact(_ fd: Int32, _ count: Int, deadline: Deadline) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            guard try FD.waitReadable(fd, until: deadline) else { throw WireError.stalled("the handshake was not completed in time") }
            let n = try out.withUnsafeMutableBytes { raw in
                // count > 0 here, so the buffer has a base address.
                try FD.read(fd, into: raw.baseAddress.unsafelyUnwrapped + offset, count: count - offset)
            }
            if n == 0 { throw WireError.closed }
            offset += n
        }
        return out
    }

    /// Runs the client side of the handshake on a connected socket and returns the connection.
    /// The socket is closed on failure.
    /// - Throws: `WireError` (not distr, version, wrong secret, refused, busy) or `SystemError`.
    package static func client(
        fd: Int32, peer: String, key: [UInt8], kind: ConnectionKind, context: [UInt8] = [],
        timeout: Double, reportedTimeout: Double? = nil, limits: Limits = .default, headerOnlyTypes: Set<UInt8> = []
    ) throws -> Connection {
        let keys = try clientHandshake(fd: fd, key: key, kind: kind, context: context, timeout: timeout, reportedTimeout: reportedTimeout)
        return Connection(
            fd: fd, peer: peer, keys: keys, maxPayload: limits.maxFrame, headerOnlyTypes: headerOnlyTypes,
            frameTimeout: limits.frameTimeout)
    }

    /// The client side of the handshake on a raw socket, up to and including the verdict, all
    /// within `timeout` seconds. The socket is closed on failure. A handshake that times out is
    /// reported with `reportedTimeout` when given (the user's whole connect timeout, of which
    /// `timeout` is what was left after the TCP connect).
    package static func clientHandshake(
        fd: Int32, key: [UInt8], kind: ConnectionKind, context: [UInt8], timeout: Double, reportedTimeout: Double? = nil
    ) throws -> SessionKeys {
        try handshakeAsClient(fd: fd, key: key, kind: kind, context: context, timeout: timeout, reportedTimeout: reportedTimeout).keys
    }

    /// The handshake of a rank connection (kind rank, the job key): true when the worker said the
    /// target rank answers `bothWays` (verdict 2).
    package static func rankHandshake(fd: Int32, key: [UInt8], context: [UInt8], timeout: Double) throws -> Bool {
        try handshakeAsClient(fd: fd, key: key, kind: .rank, context: context, timeout: timeout, reportedTimeout: nil).verdict
            == Handshake.Verdict.acceptedAnswering
    }

    private static func handshakeAsClient(
        fd: Int32, key: [UInt8], kind: ConnectionKind, context: [UInt8], timeout: Double, reportedTimeout: Double?
    ) throws -> (keys: SessionKeys, verdict: UInt8) {
        let deadline = Deadline.after(timeout)
        do {
            var handshake = ClientHandshake(Handshake.Client(key: key, kind: kind, context: context))
            try FD.writeAll(fd, handshake.hello)
            while true {
                switch try handshake.received(try readExact(fd, handshake.bytesWanted, deadline: deadline)) {
                case .needBytes: continue
                case .send(let bytes): try FD.writeAll(fd, bytes)
                case .accepted(let keys, let verdict): return (keys, verdict)
                }
            }
        } catch {
            FD.close(fd)
            throw clientHandshakeFailure(error, timeout: reportedTimeout ?? timeout)
        }
    }

    /// What a client reports for a handshake that failed with `error`: a stall or an end of
    /// stream is named as the handshake's (`timeout`: the one the user gave); anything else
    /// is itself.
    static func clientHandshakeFailure(_ error: any Error, timeout: Double) -> any Error {
        switch error {
        case WireError.stalled: WireError.authenticationFailed("no handshake answer within \((timeout * 1000).rounded() / 1000) s")
        case WireError.closed:
            WireError.authenticationFailed(
                "the peer closed the connection during the handshake (it does not hold this key, or is not a distr worker)")
        default: error
        }
    }

    /// Runs the server side up to (not including) the verdict byte, all before `deadline`.
    /// `key` picks the key for the hello; nil (an unknown job) is answered exactly like a wrong
    /// key, under a random one, so the answer tells a stranger nothing about which jobs exist.
    /// The caller sends the verdict with `accept(fd:)` once it has done whatever must precede it.
    /// `version` is the protocol version this side advertises (`Handshake.version` but in tests).
    package static func serverHandshake(
        fd: Int32, deadline: Deadline, version: UInt16 = Handshake.version, key: (Handshake.Hello) -> [UInt8]?
    ) throws -> (hello: Handshake.Hello, keys: SessionKeys) {
        var replied = false
        return try serverHandshake(fd: fd, deadline: deadline, version: version, replied: &replied, key: key)
    }

    /// The same, and `replied` says (also when it throws) whether the reply was sent: what a
    /// displaced handshake's "busy" must then be (see `Handshake`).
    package static func serverHandshake(
        fd: Int32, deadline: Deadline, version: UInt16 = Handshake.version, replied: inout Bool,
        key: (Handshake.Hello) -> [UInt8]?
    ) throws -> (hello: Handshake.Hello, keys: SessionKeys) {
        let preamble = try readExact(fd, 6, deadline: deadline)
        var hello: Handshake.Hello
        let contextLength: Int
        do {
            try Handshake.Hello.checkPreamble(preamble, ours: version)
            let fixed = preamble + (try readExact(fd, Handshake.helloFixedSize - 6, deadline: deadline))
            (hello, contextLength) = try Handshake.Hello.parseFixed(fixed, ours: version)
        } catch WireError.versionMismatch(let theirs, let ours) {
            let refusal = Handshake.Server.refusal(.versionMismatch, version: version)
            try? FD.writeAll(fd, refusal)  // Best effort: the peer learns why; the error below counts.
            throw WireError.versionMismatch(theirs: theirs, ours: ours)
        }
        hello.context = try readExact(fd, contextLength, deadline: deadline)
        let known = key(hello)
        let server = Handshake.Server(key: known ?? randomBytes(32), hello: hello)
        try FD.writeAll(fd, server.reply)
        replied = true
        let proof: [UInt8]
        do { proof = try readExact(fd, 32, deadline: deadline) } catch WireError.closed {
            // A client that leaves right after the worker's proof found that proof wrong.
            throw WireError.authenticationFailed("the client left after checking the worker's proof")
        }
        let keys = try server.verify(proof: proof)
        // Only reachable when the client proved a key that is random and never sent: impossible.
        guard known != nil else { throw WireError.authenticationFailed("unknown job") }
        return (hello, keys)
    }

    /// Sends the verdict that completes a server handshake and wraps the socket.
    package static func accept(
        fd: Int32, peer: String, keys: SessionKeys, limits: Limits = .default, headerOnlyTypes: Set<UInt8> = []
    ) throws -> Connection {
        try FD.writeAll(fd, [Handshake.Verdict.accepted])
        return Connection(
            fd: fd, peer: peer, keys: keys, maxPayload: limits.maxFrame, headerOnlyTypes: headerOnlyTypes,
            frameTimeout: limits.frameTimeout)
    }
}

/// The state behind `Connection.close`: whether it has begun, how many calls use the
/// descriptor now, and whether the descriptor has been released.
private struct DescriptorUse {
    var closing = false
    var users = 0
    var released = false

    mutating func release(_ fd: Int32) {
        guard !released else { return }
        FD.close(fd)
        released = true
    }
}
