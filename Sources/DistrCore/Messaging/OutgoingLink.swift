@preconcurrency import Glibc
import Foundation
import Synchronization

/// What follows a frame header: plain bytes, or a numeric array sent from its own memory.
enum FrameBody: Sendable {
    case bytes([UInt8])
    case numeric(any RawNumericArray)

    var count: Int {
        switch self {
        case .bytes(let b): b.count
        case .numeric(let a): a.elementCount * type(of: a).elementSize
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
    }

    let fd: Int32
    let rank: Int
    private let state = Mutex(State())

    init(fd: Int32, rank: Int) {
        self.fd = fd
        self.rank = rank
        FD.setNonblocking(fd)
    }

    deinit { FD.close(fd) }

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
                if try write(&item, blocking: false) {
                    releaseOrHandOver()
                    return
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

    /// Waits until everything queued has been written.
    func flush() async throws {
        try await send(header: [], body: .bytes([]))
    }

    /// Writes as much as possible; returns true when the whole frame is out. With `blocking`,
    /// waits with poll whenever the socket is full.
    private func write(_ item: inout Pending, blocking: Bool) throws -> Bool {
        while item.offset < item.total {
            let n: Int = item.body.withRawBytes { body in
                item.header.withUnsafeBytes { header in
                    var vectors: [iovec] = []
                    if item.offset < header.count {
                        vectors.append(
                            iovec(iov_base: UnsafeMutableRawPointer(mutating: header.baseAddress! + item.offset), iov_len: header.count - item.offset)
                        )
                        if body.count > 0 {
                            vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: body.baseAddress!), iov_len: body.count))
                        }
                    } else {
                        let start = item.offset - header.count
                        vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: body.baseAddress! + start), iov_len: body.count - start))
                    }
                    return writev(fd, vectors, Int32(vectors.count))
                }
            }
            if n > 0 {
                item.offset += n
                continue
            }
            let code = errno
            if n < 0 && code == EINTR { continue }
            if n < 0 && (code == EAGAIN || code == EWOULDBLOCK) {
                if !blocking { return false }
                try FD.waitWritable(fd)
                continue
            }
            throw NodeError.sendFailed(
                rank: rank, reason: code == EPIPE || code == ECONNRESET ? "the rank has gone away" : String(cString: strerror(code)))
        }
        return true
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

    /// Drains the queue on a dedicated thread, then gives the link back.
    private func startWriter(first: (Pending, CheckedContinuation<Void, any Error>)?) {
        let thread = Thread { [self] in
            var current = first
            while true {
                if current == nil {
                    current = state.withLock { s in
                        if s.queue.isEmpty {
                            s.busy = false
                            return nil
                        }
                        return s.queue.removeFirst()
                    }
                }
                guard let pair = current else { return }
                var item = pair.0
                let continuation = pair.1
                do {
                    _ = try write(&item, blocking: true)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                    fail(error)
                    return
                }
                current = nil
            }
        }
        thread.name = "distr-send-\(rank)"
        thread.start()
    }

    /// Half-closes: the receiver reads everything sent, then end of stream.
    func finish() { shutdown(fd, Int32(SHUT_WR)) }
}

/// Reads frames from one incoming connection on a dedicated thread and hands them to the mailbox.
enum IncomingReader {
    static func start(fd: Int32, from rank: Int, mailbox: Mailbox) {
        let thread = Thread {
            defer {
                FD.close(fd)
                mailbox.connectionClosed(from: rank)
            }
            var header = [UInt8](repeating: 0, count: RankFrame.headerSize)
            while true {
                guard readFully(fd, into: &header, count: RankFrame.headerSize) else { return }
                guard let frame = try? RankFrame.parse(header) else { return }
                if frame.kind == RankFrame.goodbye { return }
                var payload = [UInt8](unsafeUninitializedCapacity: frame.length) { _, initialized in initialized = frame.length }
                guard readFully(fd, into: &payload, count: frame.length) else { return }
                mailbox.deliver(Envelope(source: rank, frame: frame, payload: payload))
            }
        }
        thread.name = "distr-recv-\(rank)"
        thread.start()
    }

    static func readFully(_ fd: Int32, into buffer: inout [UInt8], count: Int) -> Bool {
        var offset = 0
        return buffer.withUnsafeMutableBytes { raw in
            while offset < count {
                let n = read(fd, raw.baseAddress! + offset, count - offset)
                if n > 0 {
                    offset += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return false
                }
            }
            return true
        }
    }
}
