import Dispatch
import Synchronization

/// What follows a frame header: plain bytes, or a numeric array sent from its own memory.
enum FrameBody: Sendable {
    case bytes([UInt8])
    case numeric(any RawNumericArray)

    var count: Int {
        switch self {
        case .bytes(let b): b.count
        case .numeric(let a): a.rawByteCount
        }
    }

    func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch self {
        case .bytes(let b): try b.withUnsafeBytes(body)
        case .numeric(let a): try a.withRawBytes(body)
        }
    }
}

/// The sending side of a connection to one rank. The socket is nonblocking: a send writes
/// directly from the calling task and returns when the kernel took everything (the common case
/// for messages that fit the socket buffer). Only when the buffer is full does a dedicated writer
/// thread take over the rest and the task wait for it, so a blocking write never ties up Swift's
/// cooperative pool. Frames are written whole and in the order their sends claimed the link.
///
/// With a shared-memory ring (a rank on the same worker), the frames are copied into the ring
/// instead of written to the socket; a full ring is waited for like a full socket (the writer
/// thread sleeps until the receiver's doorbell byte comes back on the socket, or its end).
final class OutgoingLink: Sendable {
    struct Pending: Sendable {
        var header: [UInt8]
        var body: FrameBody
        var offset = 0
        var total: Int { header.count + body.count }
    }

    struct State {
        var busy = false
        var queue: [(Pending, CheckedContinuation<Void, any Error>)] = []
        var failure: String?
        var writerStarted = false
        /// Where `writeNow` puts a small frame's header and body side by side (made at first use).
        var staging: [UInt8] = []
    }

    private let descriptor: FileDescriptor
    let rank: Int
    private let state = Mutex(State())
    private let work = DispatchSemaphore(value: 0)
    /// The ring frames go into, when the receiver shares one (only the sender holding the link
    /// touches it: the lock is never contended).
    private let ring: Mutex<RingWriter?>
    let hasRing: Bool

    /// Seconds a send keeps trying from the task while the socket or ring is full, before the
    /// writer thread takes over.
    private let spinBudget: Double

    /// The rank at the other end may send on this connection too (`LinkChoice`): a copy of the
    /// socket is read, so closing it with bytes unread resets it (see `isAcknowledged`).
    let readToo: Bool
    /// This rank dialled the connection and said `bothWays` on it (`LinkChoice.settledAnswer`).
    let ownDialSaidBothWays: Bool

    init(
        fd: Int32, rank: Int, ring: RingWriter? = nil, spinBudget: Double = Node.spinBudget, readToo: Bool = false,
        ownDialSaidBothWays: Bool = false
    ) {
        self.spinBudget = spinBudget
        self.readToo = readToo
        self.ownDialSaidBothWays = ownDialSaidBothWays
        descriptor = FileDescriptor(adopting: fd)
        self.rank = rank
        self.ring = Mutex(ring)
        hasRing = ring != nil
        FD.setNonblocking(fd)
    }

    /// The socket (owned by the link, closed when it goes).
    var fd: Int32 { descriptor.rawValue }

    func send(header: [UInt8], body: FrameBody) async throws {
        var item = Pending(header: header, body: body)
        let claimed = state.withLock { s -> Result<Bool, NodeError> in
            if let failure = s.failure { return .failure(.sendFailed(rank: rank, reason: failure)) }
            if s.busy { return .success(false) }
            s.busy = true
            return .success(true)
        }
        if try claimed.get() {
            do {
                // Keep writing from the task while the socket takes bytes (the receiver is
                // draining); hand over to the writer thread only after a stretch without progress.
                var deadline = Clock.now + spinBudget
                while true {
                    let before = item.offset
                    if try write(&item, blocking: false) {
                        releaseOrHandOver()
                        return
                    }
                    if item.offset != before {
                        deadline = Clock.now + spinBudget
                    } else if Clock.now > deadline {
                        break
                    } else if hasRing {
                        Threads.yield()
                    } else {
                        // Sleep until the socket takes bytes again (the receiver read some), as a
                        // blocking write would: spinning with sched_yield here hands the core to
                        // any other runnable process, and the kernel wakes a sleeper at once.
                        waitWritable(until: deadline)
                    }
                }
            } catch {
                fail(error)
                throw error
            }
            try await withCheckedThrowingContinuation { continuation in startWriter(first: (item, continuation)) }
            return
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let startNow = state.withLock { s -> Bool in
                if s.busy {
                    s.queue.append((item, continuation))
                    return false
                }
                s.busy = true
                return true
            }
            if startNow { startWriter(first: (item, continuation)) }
        }
    }

    /// The synchronous fast path of `send` through a ring: writes the whole frame (its header
    /// from the stack) when the link is idle, nothing failed, and the ring has room for all of
    /// it; true when it did. False leaves everything as it was, for `send` (a full ring, another
    /// send under way, a link without a ring, or a failure `send` then reports).
    /// - Throws: `NodeError.corruptRing` when the receiver's `tail` is impossible (the link fails).
    func sendNow(_ frame: RankFrame, body: UnsafeRawBufferPointer) throws -> Bool {
        guard hasRing else { return false }
        // Under the state lock, so that no send can claim the link meanwhile: an idle link
        // (not busy) has an empty queue and no writer thread at the ring.
        let result = state.withLock { s -> Result<(written: Bool, wake: Bool), NodeError> in
            guard !s.busy, s.failure == nil else { return .success((false, false)) }
            return frame.withHeaderBytes { header in
                ring.withLock { writer in
                    Result { () throws(NodeError) in try writer?.writeWhole(header, body) ?? (false, false) }
                }
            }
        }
        do {
            let (written, wake) = try result.get()
            if wake { Doorbell.ring(fd) }
            return written
        } catch {
            fail(error)
            throw error
        }
    }

    /// What a send's synchronous part did.
    enum Immediate: Sendable {
        case sent
        /// Nothing was written: the `async` send takes the whole frame.
        case declined
        /// The socket took part of the frame; the link is held for the rest, which `completed`
        /// hands to the link's writer thread and waits for.
        case partly(OutgoingLink, Pending)

        /// Whether the frame went whole, without waiting: callers test this before `completed`,
        /// whose `async` call allocates a frame on the task and frees it, for nothing when the
        /// frame went whole (as almost every small frame does).
        @inline(__always)
        var wentWhole: Bool {
            if case .sent = self { return true }
            return false
        }

        /// Whether the frame went, finishing one the socket took part of.
        func completed() async throws -> Bool {
            switch self {
            case .sent: return true
            case .declined: return false
            case .partly(let link, let rest):
                try await withCheckedThrowingContinuation { continuation in link.startWriter(first: (rest, continuation)) }
                return true
            }
        }
    }

    /// Frames up to this size may be written by `writeNow` on a socket.
    static let directSocketSendLimit = 16 * 1024

    /// Frames whose body is at most this size are copied behind their header and go out in one
    /// `send`; larger ones in a `writev` of the header and the body where they are.
    ///
    /// Over loopback TCP a `writev` of two parts cost 0.1-0.3 µs more one way than one buffer
    /// (a C ping-pong alternating the two in one run, 8 B to 4 KiB: 8 B 4.07 against 4.20 µs,
    /// 1 KiB 4.23 against 4.49); from 8 KiB on the copy costs as much as it saves, and at 16 KiB
    /// and 64 KiB more (docs/performance.md, "Session 30").
    static let contiguousSendLimit = 4096

    /// The synchronous part of a send on a socket (no ring), when the link is idle and nothing
    /// failed: one nonblocking `send` of the header and a small body copied together, or a
    /// `writev` of the header (from the stack) and a body of up to `directSocketSendLimit`.
    /// - Throws: `NodeError.sendFailed` when the socket failed (the link fails).
    func writeNow(_ frame: RankFrame, body: UnsafeRawBufferPointer) throws -> Immediate {
        guard !hasRing, body.count <= Self.directSocketSendLimit else { return .declined }
        let total = RankFrame.headerSize + body.count
        let outcome = state.withLock { s -> Result<IOResult, SystemError>? in
            guard !s.busy, s.failure == nil else { return nil }
            let result: Result<IOResult, SystemError>
            if body.count <= Self.contiguousSendLimit {
                if s.staging.isEmpty { s.staging = [UInt8](repeating: 0, count: RankFrame.headerSize + Self.contiguousSendLimit) }
                result = s.staging.withUnsafeMutableBytes { raw in
                    frame.store(into: raw)
                    if !body.isEmpty { UnsafeMutableRawBufferPointer(rebasing: raw[RankFrame.headerSize..<total]).copyMemory(from: body) }
                    return Result { () throws(SystemError) in try FD.sendNonblocking(fd, UnsafeRawBufferPointer(rebasing: raw[..<total])) }
                }
            } else {
                result = frame.withHeaderBytes { header in
                    Result { () throws(SystemError) in try FD.writeNonblocking(fd, header, body) }
                }
            }
            // Claimed while the lock is held: no other send may write between the two parts.
            if case .success(.bytes(let n)) = result, n < total { s.busy = true }
            return result
        }
        switch outcome {
        case nil, .success(.wouldBlock), .success(.endOfStream): return .declined
        case .success(.bytes(let n)) where n == total: return .sent
        case .success(.bytes(let n)):
            var rest = Pending(header: frame.header(), body: .bytes([UInt8](body)))
            rest.offset = n
            return .partly(self, rest)
        case .failure(let error):
            let failure = NodeError.sendFailed(rank: rank, reason: error.code.isPeerGone ? "the rank has gone away" : error.reason)
            fail(failure)
            throw failure
        }
    }

    /// Waits until everything queued has been written.
    func flush() async throws {
        try await send(header: [], body: .bytes([]))
    }

    private func waitWritable(until deadline: Double) {
        let fds = [descriptor.rawValue]
        // A failed wait ends the wait: the write that follows meets the socket's error itself.
        fds.withUnsafeBufferPointer { _ = try? FD.wait(for: $0, writing: true, seconds: deadline - Clock.now) }  // See above.
    }

    /// The most of a frame's body that goes out with its header, in the first write.
    ///
    /// A large frame written whole by one `writev` (header and all of the body) moved at about
    /// half a plain socket's speed when it came alone, after a pause, across workers (one 16 MiB
    /// message: 2.0 GB/s against 3.4-5): `perf` showed the kernel's copy from the sender's memory
    /// taking about three times as long per byte as the receiver's copy out, and a core idle a
    /// fifth of the time. With the first write ending after 64 KiB and the next call writing the
    /// rest, both copies cost the same and such a message moves at 3.2-4.8 GB/s
    /// (docs/performance.md, "Session 25"). Why the single write was slow is not pinned down: a
    /// Python rank's single write of the same frame, read by the Python receive loop, was not.
    /// A frame of up to 64 KiB still goes in one call: splitting one costs a second segment on
    /// the wire (the 64 KiB ping-pong went from 21 to 31 µs with a 16 KiB first write).
    static let firstWriteLimit = 64 << 10

    /// Writes as much as possible; returns true when the whole frame is out. With `blocking`,
    /// waits with poll whenever the socket is full. The first write carries the header and at
    /// most `firstWriteLimit` bytes of the body; the next ones carry the rest.
    private func write(_ item: inout Pending, blocking: Bool) throws -> Bool {
        if hasRing { return try writeIntoRing(&item, blocking: blocking) }
        while item.offset < item.total {
            let offset = item.offset
            let result: Result<IOResult, SystemError> = item.body.withRawBytes { body in
                item.header.withUnsafeBytes { header in
                    Result { () throws(SystemError) in
                        if offset < header.count {
                            let first = UnsafeRawBufferPointer(rebasing: body[..<min(body.count, Self.firstWriteLimit)])
                            return try FD.writeNonblocking(fd, UnsafeRawBufferPointer(rebasing: header[offset...]), first)
                        }
                        return try FD.writeNonblocking(fd, UnsafeRawBufferPointer(rebasing: body[(offset - header.count)...]))
                    }
                }
            }
            switch result {
            case .success(.bytes(let n)): item.offset += n
            case .success(.wouldBlock), .success(.endOfStream):
                if !blocking { return false }
                try FD.waitWritable(fd)
            case .failure(let error):
                throw NodeError.sendFailed(rank: rank, reason: error.code.isPeerGone ? "the rank has gone away" : error.reason)
            }
        }
        return true
    }

    /// `write` through the ring: copies as much as fits; with `blocking`, sleeps while it is full.
    private func writeIntoRing(_ item: inout Pending, blocking: Bool) throws -> Bool {
        while item.offset < item.total {
            let offset = item.offset
            let result: Result<(count: Int, wake: Bool), NodeError> = item.body.withRawBytes { body in
                item.header.withUnsafeBytes { header in
                    ring.withLock { writer in
                        Result { () throws(NodeError) in
                            guard writer != nil else { return (0, false) }
                            if offset < header.count {
                                return try writer?.write(UnsafeRawBufferPointer(rebasing: header[offset...]), body) ?? (0, false)
                            }
                            let rest = UnsafeRawBufferPointer(rebasing: body[(offset - header.count)...])
                            return try writer?.write(rest, UnsafeRawBufferPointer(start: nil, count: 0)) ?? (0, false)
                        }
                    }
                }
            }
            let (count, wake) = try result.get()
            if wake { Doorbell.ring(fd) }
            if count > 0 {
                item.offset += count
                continue
            }
            if !blocking { return false }
            try waitForRoom()
        }
        return true
    }

    /// Sleeps until the receiver has read something from the full ring (its doorbell byte comes
    /// back on the socket), or throws when it has gone (the socket's end of stream).
    private func waitForRoom() throws {
        if try ring.withLock({ writer in Result { () throws(NodeError) in try writer?.prepareToSleep() ?? true } }).get() { return }
        // The receiver may not be reading (no receive waits, so it asked for no doorbell): ring
        // anyway, so that its progress thread empties the ring and a buffered send never waits
        // for a `recv`.
        Doorbell.ring(fd)
        do {
            _ = try FD.waitReadable([fd])
            if Doorbell.drain(fd) { throw NodeError.sendFailed(rank: rank, reason: "the rank has gone away") }
        } catch let error as SystemError {
            throw NodeError.sendFailed(rank: rank, reason: error.reason)
        }
    }

    private func releaseOrHandOver() {
        let more = state.withLock { s -> Bool in
            if s.queue.isEmpty {
                s.busy = false
                return false
            }
            return true
        }
        if more { startWriter(first: nil) }
    }

    private func fail(_ error: any Error) {
        let waiting = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            s.failure = "\(error)"
            s.busy = false
            defer { s.queue.removeAll() }
            return s.queue.map(\.1)
        }
        for continuation in waiting { continuation.resume(throwing: error) }
    }

    /// Hands the queue to the link's writer thread (started on first need, then kept), which
    /// drains it with blocking writes and gives the link back.
    private func startWriter(first: (Pending, CheckedContinuation<Void, any Error>)?) {
        let start = state.withLock { s -> Bool in
            if let first { s.queue.insert(first, at: 0) }
            defer { s.writerStarted = true }
            return !s.writerStarted
        }
        if start {
            let threadBody: @Sendable () -> Void = { [self] in writerLoop() }
            Threads.start(name: "distr-send-\(rank)", threadBody)
        }
        work.signal()
    }

    private func writerLoop() {
        while true {
            work.wait()
            while let (item, continuation) = state.withLock({ s -> (Pending, CheckedContinuation<Void, any Error>)? in
                if s.queue.isEmpty {
                    s.busy = false
                    return nil
                }
                return s.queue.removeFirst()
            }) {
                var current = item
                do {
                    _ = try write(&current, blocking: true)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                    fail(error)
                }
            }
        }
    }

    /// Half-closes: the receiver reads everything sent, then end of stream.
    func finish() {
        try? Socket.shutdown(fd, .write)  // ENOTCONN: the rank has gone; it reads nothing more anyway.
    }

    /// Whether the other end has acknowledged everything written (TCP), or the connection is
    /// closed. A socket closed with bytes unread in it is reset, and a reset drops what the other
    /// end had not acknowledged yet: a connection read both ways must not be closed, nor its
    /// process end, before this.
    var isAcknowledged: Bool { TCPSocket.unacknowledgedBytes(fd) == 0 }
}
