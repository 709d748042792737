import Synchronization

/// One connection another rank opened to this one. The socket is nonblocking; whoever wants
/// its frames (a receiving task, or the progress thread) reads what is there without waiting.
final class IncomingChannel: Sendable {
    enum Progress: Equatable {
        /// Read everything available; the connection is still open. `moved`: some bytes came.
        case drained(moved: Bool)
        /// The sender closed it, or broke the protocol (receives from it then fail with the error).
        case closed
    }

    private let descriptor: FileDescriptor
    let source: Int
    private let reader: Mutex<FrameStreamReader>
    private let isClosed = Atomic<Bool>(false)

    init(fd: Int32, source: Int, pool: BufferPool, maxMessageBytes: Int = RankFrameDecoder.defaultMaxMessageBytes) {
        descriptor = FileDescriptor(adopting: fd)
        self.source = source
        FD.setNonblocking(fd)
        reader = Mutex(FrameStreamReader(fd: fd, decoder: RankFrameDecoder(source: source, maxMessageBytes: maxMessageBytes, pool: pool)))
    }

    /// The socket (owned by the channel, closed when it goes).
    var fd: Int32 { descriptor.rawValue }

    var closed: Bool { isClosed.load(ordering: .acquiring) }

    /// Reads every whole frame available now and hands each to `mailbox`. Never blocks on the
    /// socket (the lock is held only while reading what is already there).
    func drain(into mailbox: Mailbox) -> Progress {
        if closed { return .closed }
        // Frames are delivered while the channel is held: two drains (a receiving task and the
        // progress thread) must not hand over their batches in the wrong order.
        let (ended, moved, failure) = reader.withLock { reader -> (Bool, Bool, NodeError?) in
            let before = reader.bytesRead
            while true {
                switch reader.next() {
                case .frame(let frame, let payload, let array):
                    mailbox.deliver(Envelope(source: source, frame: frame, payload: payload, array: array))
                case .wouldBlock: return (false, reader.bytesRead != before, nil)
                case .closed: return (true, true, nil)
                case .failed(let error): return (true, true, error)
                }
            }
        }
        if ended && !isClosed.exchange(true, ordering: .acquiringAndReleasing) {
            // A sender that broke the protocol is heard no more: whatever follows its bad header
            // cannot be framed. (The descriptor itself is closed when the channel goes.)
            if failure != nil { try? Socket.shutdown(fd, .both) }  // Fails only if the peer reset it: heard no more either way.
            mailbox.connectionClosed(from: source, failure: failure)
            return .closed
        }
        return ended ? .closed : .drained(moved: moved)
    }
}

/// Reads a rank connection's socket into a `RankFrameDecoder`, which decides everything else.
/// Small frames usually come whole from one `read` into the decoder's reused buffer; a large
/// payload is read straight into its final array (typed by the header's element code), so
/// receiving it copies nothing and decodes nothing.
struct FrameStreamReader {
    enum Step {
        case frame(RankFrame, [UInt8], (any RawNumericArray)?)
        case wouldBlock
        /// End of stream, a goodbye, or a read error.
        case closed
        /// The sender broke the protocol.
        case failed(NodeError)
    }

    let fd: Int32
    private var decoder: RankFrameDecoder
    private var ended = false
    /// Why the sender was cut off, kept: a second drain racing the first must see the same
    /// failure, not a plain end of stream (which would lose the error and leave its waiters waiting).
    private var failure: NodeError?
    /// Bytes taken from the socket so far (lets a reader see whether data is still flowing).
    private(set) var bytesRead = 0

    init(fd: Int32, decoder: RankFrameDecoder) {
        self.fd = fd
        self.decoder = decoder
    }

    mutating func next() -> Step {
        if let failure { return .failed(failure) }
        while !ended {
            let step: RankFrameDecoder.Step
            do { step = try decoder.next() } catch {
                ended = true
                failure = error
                return .failed(error)
            }
            let descriptor = fd
            // What the read did (it stays end of stream if the decoder had no room to read into).
            var outcome = IOResult.endOfStream
            switch step {
            case .frame(let frame, let payload, let array): return .frame(frame, payload, array)
            case .goodbye:
                ended = true
                return .closed
            case .needBytes: _ = decoder.readIntoBuffer { Self.read(descriptor, into: $0, &outcome) }
            case .needPayload: _ = decoder.readIntoPayload { Self.read(descriptor, into: $0, &outcome) }
            }
            switch outcome {
            case .bytes(let n): bytesRead += n
            case .wouldBlock: return .wouldBlock
            case .endOfStream: ended = true
            }
        }
        return .closed
    }

    /// One read that never waits, for the decoder's `readInto...`: the byte count it moved (0
    /// otherwise), and in `outcome` what happened.
    @inline(__always)
    private static func read(_ fd: Int32, into space: UnsafeMutableRawBufferPointer, _ outcome: inout IOResult) -> Int {
        do {
            outcome = try FD.readNonblocking(fd, into: space)
        } catch {
            // A read error (a reset) ends the stream like end of file: the sender is gone.
            outcome = .endOfStream
        }
        if case .bytes(let n) = outcome { return n }
        return 0
    }
}
