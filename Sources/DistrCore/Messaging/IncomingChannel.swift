@preconcurrency import Glibc
import Synchronization

/// One connection another rank opened to this one. The socket is nonblocking; whoever wants
/// its frames (a receiving task, or the progress thread) reads what is there without waiting.
final class IncomingChannel: Sendable {
    enum Progress: Equatable {
        /// Read everything available; the connection is still open. `moved`: some bytes came.
        case drained(moved: Bool)
        /// The sender closed it (or broke the protocol).
        case closed
    }

    let fd: Int32
    let source: Int
    private let reader: Mutex<FrameStreamReader>
    private let isClosed = Atomic<Bool>(false)

    init(fd: Int32, source: Int, pool: BufferPool) {
        self.fd = fd
        self.source = source
        FD.setNonblocking(fd)
        reader = Mutex(FrameStreamReader(fd: fd, pool: pool))
    }

    deinit { FD.close(fd) }

    var closed: Bool { isClosed.load(ordering: .acquiring) }

    /// Reads every whole frame available now and hands each to `mailbox`. Never blocks on the
    /// socket (the lock is held only while reading what is already there).
    func drain(into mailbox: Mailbox) -> Progress {
        if closed { return .closed }
        // Frames are delivered while the channel is held: two drains (a receiving task and the
        // progress thread) must not hand over their batches in the wrong order.
        let (ended, moved) = reader.withLock { reader -> (Bool, Bool) in
            let before = reader.bytesRead
            while true {
                switch reader.next() {
                case .frame(let frame, let payload, let array):
                    mailbox.deliver(Envelope(source: source, frame: frame, payload: payload, array: array))
                case .wouldBlock: return (false, reader.bytesRead != before)
                case .closed: return (true, true)
                }
            }
        }
        if ended && !isClosed.exchange(true, ordering: .acquiringAndReleasing) {
            mailbox.connectionClosed(from: source)
            return .closed
        }
        return ended ? .closed : .drained(moved: moved)
    }
}

/// Cuts a rank connection's byte stream into frames, resuming wherever the last read stopped.
/// Small frames usually come whole from one `read` into a reused buffer; a large payload is read
/// straight into its final array (typed by the header's element code), so receiving it copies
/// nothing and decodes nothing.
struct FrameStreamReader {
    enum Step {
        case frame(RankFrame, [UInt8], (any RawNumericArray)?)
        case wouldBlock
        case closed
    }

    /// A frame whose payload is still arriving.
    struct Pending {
        var frame: RankFrame
        var bytes: [UInt8] = []
        var array: (any RawNumericArray)?
        var filled = 0
    }

    let fd: Int32
    let pool: BufferPool
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var start = 0
    private var end = 0
    private var pending: Pending?
    private var ended = false
    /// Bytes taken from the socket so far (lets a reader see whether data is still flowing).
    private(set) var bytesRead = 0

    init(fd: Int32, pool: BufferPool) {
        self.fd = fd
        self.pool = pool
    }

    /// Payloads at least this large are read directly into their array.
    static let directThreshold = 32 * 1024

    mutating func next() -> Step {
        while true {
            if pending == nil {
                if end - start >= RankFrame.headerSize {
                    guard let frame = try? RankFrame.parse(Array(buffer[start..<start + RankFrame.headerSize])), frame.kind == RankFrame.message
                    else {
                        ended = true
                        return .closed
                    }
                    start += RankFrame.headerSize
                    pending = allocate(frame)
                } else {
                    if ended { return .closed }
                    switch fillBuffer() {
                    case .frame: break  // bytes arrived: look for a header again
                    case .closed: return .closed
                    case .wouldBlock: return .wouldBlock
                    }
                }
                continue
            }
            // Take the pending frame out while working on it: a second reference to its array
            // would make every write copy the whole payload.
            guard var current = pending else { continue }
            pending = nil
            let total = current.frame.length
            // Take what the buffer already holds.
            let buffered = min(end - start, total - current.filled)
            if buffered > 0 {
                Self.write(&current, from: buffer, range: start..<start + buffered)
                start += buffered
            }
            if current.filled == total {
                pending = nil
                return .frame(current.frame, current.bytes, current.array)
            }
            if ended {
                pending = current
                return .closed
            }
            if total - current.filled >= Self.directThreshold {
                // Straight into the payload.
                let n = Self.readDirect(fd, into: &current)
                pending = current
                if n > 0 {
                    bytesRead += n
                    continue
                }
                if n == 0 {
                    ended = true
                    return .closed
                }
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? .wouldBlock : .closed
            }
            pending = current
            switch fillBuffer() {
            case .wouldBlock: return .wouldBlock
            case .closed: return .closed
            case .frame: continue
            }
        }
    }

    /// Reads into the buffer; `.frame` means some bytes arrived.
    private mutating func fillBuffer() -> Step {
        if start == end {
            start = 0
            end = 0
        } else if end == buffer.count || start > buffer.count / 2 {
            let (s, e) = (start, end)
            buffer.withUnsafeMutableBytes { raw in raw.baseAddress!.copyMemory(from: raw.baseAddress! + s, byteCount: e - s) }
            end -= start
            start = 0
        }
        while true {
            let (descriptor, offset) = (fd, end)
            let n = buffer.withUnsafeMutableBytes { raw in read(descriptor, raw.baseAddress! + offset, raw.count - offset) }
            if n > 0 {
                end += n
                bytesRead += n
                return .frame(RankFrame(encoding: .bytes, tag: 0, length: 0), [], nil)
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            ended = true
            return .closed
        }
    }

    func allocate(_ frame: RankFrame) -> Pending {
        var pending = Pending(frame: frame)
        if frame.encoding == .numeric, let type = RawNumericTypes.byCode[frame.element], frame.length % type.elementSize == 0 {
            let count = frame.length / type.elementSize
            if let recycled = pool.take(code: frame.element, count: count) {
                pending.array = recycled
                return pending
            }
            var array = type.uninitialized(count: count)
            array.withMutableRawBytes { Self.preferHugePages($0) }
            pending.array = array
        } else {
            var bytes = [UInt8].uninitialized(count: frame.length)
            bytes.withMutableRawBytes { Self.preferHugePages($0) }
            pending.bytes = bytes
        }
        return pending
    }

    static func write(_ pending: inout Pending, from source: [UInt8], range: Range<Int>) {
        let offset = pending.filled
        source.withUnsafeBytes { raw in
            let from = UnsafeRawBufferPointer(rebasing: raw[range])
            if pending.array != nil {
                pending.array!.withMutableRawBytes { $0.baseAddress!.advanced(by: offset).copyMemory(from: from.baseAddress!, byteCount: from.count) }
            } else {
                pending.bytes.withUnsafeMutableBytes {
                    $0.baseAddress!.advanced(by: offset).copyMemory(from: from.baseAddress!, byteCount: from.count)
                }
            }
        }
        pending.filled += range.count
    }

    static func readDirect(_ fd: Int32, into pending: inout Pending) -> Int {
        let offset = pending.filled
        let n: Int
        if pending.array != nil {
            n = pending.array!.withMutableRawBytes { read(fd, $0.baseAddress! + offset, $0.count - offset) }
        } else {
            n = pending.bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + offset, $0.count - offset) }
        }
        if n > 0 { pending.filled += n }
        return n
    }

    /// Large fresh buffers would otherwise take a page fault every 4 KiB as the socket fills
    /// them; transparent huge pages cut that 512-fold where the kernel allows it.
    static func preferHugePages(_ target: UnsafeMutableRawBufferPointer) {
        let huge = 2 << 20
        guard target.count >= 4 * huge, let base = target.baseAddress else { return }
        let first = (Int(bitPattern: base) + huge - 1) & ~(huge - 1)
        let last = (Int(bitPattern: base) + target.count) & ~(huge - 1)
        if last > first, let pointer = UnsafeMutableRawPointer(bitPattern: first) {
            madvise(pointer, last - first, 14)  // MADV_HUGEPAGE
        }
    }
}
