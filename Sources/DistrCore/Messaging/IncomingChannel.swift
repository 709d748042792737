import Synchronization

/// One connection another rank opened to this one. The socket is nonblocking; whoever wants
/// its frames (a receiving task, or the progress thread) reads what is there without waiting.
/// With a shared-memory ring (a rank on the same worker), the frames come through the ring and
/// the socket only rings the doorbell and reports the sender's end.
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
    /// True when the frames come through a shared-memory ring.
    let hasRing: Bool
    /// The ring's memory, for looks and sleeps that take no lock (`mayHaveUnread`, `sleepOnRing`).
    private let ringMemory: RingMemory?
    /// Receiving tasks reading the ring themselves right now (the progress thread leaves it to them).
    let spinners = Atomic<Int>(0)

    /// Receiving tasks reading a plain socket themselves, and the progress thread's watch on it.
    struct Watch {
        var readers = 0
        /// The progress thread's epoll does not wake for it (`ProgressThread.arm`).
        var silenced = false
        /// Reads begun so far, and the count when the progress thread last looked.
        var uses = 0
        var usesSeen = 0
    }
    let watch = Mutex(Watch())

    /// Told of the connection signal this channel began with (`LinkChoice`), once, outside the
    /// channel's lock.
    typealias SignalHandler = @Sendable (IncomingChannel, RankFrame) -> Void
    private let onSignal: SignalHandler?

    /// `signal`: the connection signal the stream may begin with (`RankFrameDecoder.signal`),
    /// handed to `onSignal`.
    init(
        fd: Int32, source: Int, pool: BufferPool, maxMessageBytes: Int = RankFrameDecoder.defaultMaxMessageBytes, ring: RingReader? = nil,
        signal: UInt8 = 0, onSignal: SignalHandler? = nil
    ) {
        descriptor = FileDescriptor(adopting: fd)
        self.source = source
        hasRing = ring != nil
        ringMemory = ring?.memory
        self.onSignal = onSignal
        FD.setNonblocking(fd)
        var decoder = RankFrameDecoder(source: source, maxMessageBytes: maxMessageBytes, pool: pool)
        decoder.signal = signal
        reader = Mutex(FrameStreamReader(input: ByteInput(fd: fd, ring: ring), decoder: decoder))
    }

    /// The socket (owned by the channel, closed when it goes).
    var fd: Int32 { descriptor.rawValue }

    var closed: Bool { isClosed.load(ordering: .acquiring) }

    /// Reads every whole frame available now and hands each to `mailbox`. Never blocks on the
    /// socket (the lock is held only while reading what is already there). `watchingSocket`
    /// false: with a ring, an empty ring does not look at the socket (a spinning task saves the
    /// system call; the progress thread sees the end of stream). `firstFrame`: stop after one
    /// frame (a receiving task looks whether it is the one it waits for before it reads again,
    /// which saves the read that would only find the socket empty).
    func drain(into mailbox: Mailbox, watchingSocket: Bool = true, firstFrame: Bool = false) -> Progress {
        var unclaimed: Claim?
        return drain(into: mailbox, watchingSocket: watchingSocket, firstFrame: firstFrame, claim: &unclaimed)
    }

    /// A receiving task's wish to keep the first frame it reads that it can take
    /// (`Mailbox.deliver(_:claimingFor:tag:)`); later frames are delivered as usual.
    struct Claim {
        let source: Int?
        let tag: Int?
        var envelope: Envelope?

        /// Hands `envelope`, read next, to `mailbox`, or keeps it when this receive has none yet
        /// and may take it. (A method, so that the claim is changed in place rather than copied.)
        mutating func hand(_ envelope: Envelope, to mailbox: Mailbox) {
            if self.envelope == nil {
                self.envelope = mailbox.deliver(envelope, claimingFor: source, tag: tag)
            } else {
                mailbox.deliver(envelope)
            }
        }
    }

    /// `drain`, keeping a frame for `claim` (its `envelope`) instead of delivering it.
    func drain(into mailbox: Mailbox, watchingSocket: Bool = true, firstFrame: Bool = false, claim: inout Claim?) -> Progress {
        if closed { return .closed }
        // A spinning look at an empty ring: no lock, no decoder (everything whole was delivered
        // by the last drain).
        if !watchingSocket, let ringMemory, !ringMemory.mayHaveUnread { return .drained(moved: false) }
        // Frames are delivered while the channel is held: two drains (a receiving task and the
        // progress thread) must not hand over their batches in the wrong order.
        var signal: RankFrame?
        let (ended, moved, failure) = reader.withLock { reader -> (Bool, Bool, NodeError?) in
            reader.input.watchSocket = watchingSocket
            let before = reader.bytesRead
            while true {
                switch reader.hasRing ? reader.nextFromRing() ?? reader.next() : reader.next() {
                case .signal(let frame): signal = frame
                case .frame(let frame, let payload, let array):
                    let envelope = Envelope(source: source, frame: frame, payload: payload, held: array)
                    // The drain goes on after a claimed frame: frames left in the decoder's
                    // buffer would wait there, unseen by a look at the ring, for the next bytes.
                    if claim != nil {
                        claim?.hand(envelope, to: mailbox)
                    } else {
                        mailbox.deliver(envelope)
                    }
                    if firstFrame { return (false, true, nil) }
                case .wouldBlock: return (false, reader.bytesRead != before, nil)
                case .closed: return (true, true, nil)
                case .failed(let error): return (true, true, error)
                }
            }
        }
        // Handed on before this drain reports an end of stream (another drain may report it
        // first: nothing depends on the order); not when the sender broke the protocol after it.
        if let signal, failure == nil { onSignal?(self, signal) }
        if ended && !isClosed.exchange(true, ordering: .acquiringAndReleasing) {
            // A sender that broke the protocol is heard no more: whatever follows its bad header
            // cannot be framed. (The descriptor itself is closed when the channel goes.)
            if failure != nil { try? Socket.shutdown(fd, .both) }  // Fails only if the peer reset it: heard no more either way.
            mailbox.connectionClosed(from: source, failure: failure)
            // A receiving task asleep on the ring learns it now, not at its time limit.
            ringMemory?.wakeWaitingReceiver()
            return .closed
        }
        // The progress thread took bytes (the channel's socket may be watched again while a task
        // sleeps on the ring): a receiving task asleep on the ring must look at the mailbox now,
        // not at its time limit. A free look at a word unless one sleeps.
        if moved && watchingSocket, let ringMemory {
            SharedWord.fence()
            ringMemory.wakeWaitingReceiver()
        }
        return ended ? .closed : .drained(moved: moved)
    }

    /// Asks the ring's sender to ring the doorbell after its next write (for the progress thread:
    /// a receive parks, or the channel is new). True when bytes are already waiting (drain
    /// instead of waiting). Always false without a ring (the socket itself wakes the thread).
    func prepareToSleep() -> Bool {
        guard hasRing, !closed else { return false }
        return reader.withLock { reader in
            do { return try reader.input.ring?.prepareToSleep() ?? false } catch {
                return true  // The drain that follows meets the same error and closes the channel.
            }
        }
    }

    /// A receiving task starts reading the ring itself: the sender need not ring the doorbell.
    func beginSpin() {
        spinners.add(1, ordering: .acquiringAndReleasing)
        ringMemory?.stayAwake()  // A shared word: no lock needed.
    }

    /// The task stops reading the ring. When other receives are parked, asks for the doorbell
    /// again (the progress thread must read for them) and drains what came meanwhile. Otherwise
    /// the ring stays quiet: the sender writes without a system call, and the next receive looks
    /// at the ring itself (one that parks asks for the doorbell first: `Node.envelope`).
    func endSpin(into mailbox: Mailbox) -> Progress {
        guard spinners.subtract(1, ordering: .acquiringAndReleasing).newValue == 0, mailbox.waiterCount > 0, prepareToSleep() else {
            return .drained(moved: false)
        }
        return drain(into: mailbox)
    }

    /// Sleeps until the ring's sender writes, at most `timeout` seconds (`RingMemory.sleepUntilWritten`).
    func sleepOnRing(timeout: Double, unless delivered: () -> Bool) {
        ringMemory?.sleepUntilWritten(timeout: timeout, unless: delivered)
    }
}

/// Where a channel's bytes come from: its socket, or a shared-memory ring beside it (then the
/// socket carries only doorbell bytes, and its end of stream says the sender has gone).
struct ByteInput {
    let fd: Int32
    var ring: RingReader?
    /// Whether an empty ring looks at the socket for doorbells and the end of stream.
    var watchSocket = true
    private(set) var socketEnded = false
    /// Why the ring cannot be read (its state is impossible).
    private(set) var failure: NodeError?

    init(fd: Int32, ring: RingReader?) {
        self.fd = fd
        self.ring = ring
    }

    /// One read that never waits: what it did, after copying at most `space.count` bytes.
    @inline(__always)
    mutating func read(into space: UnsafeMutableRawBufferPointer) -> IOResult {
        guard var ring else { return Self.readSocket(fd, into: space) }
        defer { self.ring = ring }
        do {
            var (count, wake) = try ring.read(into: space)
            if count == 0 && watchSocket && !socketEnded {
                socketEnded = Doorbell.drain(fd)
                // Each doorbell consumed here cleared the request for one: ask again (the
                // progress thread may sleep next), then look once more, for what the sender wrote
                // before ringing, or just before it went.
                if !socketEnded { _ = try ring.prepareToSleep() }
                (count, wake) = try ring.read(into: space)
            }
            if wake { Doorbell.ring(fd) }
            if count > 0 { return .bytes(count) }
            return socketEnded ? .endOfStream : .wouldBlock
        } catch {
            failure = error
            return .endOfStream
        }
    }

    @inline(__always)
    static func readSocket(_ fd: Int32, into space: UnsafeMutableRawBufferPointer) -> IOResult {
        do { return try FD.readNonblocking(fd, into: space) } catch {
            // A read error (a reset) ends the stream like end of file: the sender is gone.
            return .endOfStream
        }
    }
}

/// Reads a rank connection's socket into a `RankFrameDecoder`, which decides everything else.
/// Small frames usually come whole from one `read` into the decoder's reused buffer; a large
/// payload is read straight into its final array (typed by the header's element code), so
/// receiving it copies nothing and decodes nothing.
struct FrameStreamReader {
    enum Step {
        case frame(RankFrame, [UInt8], HeldArray?)
        /// A connection signal (`RankFrameDecoder.Step.signal`).
        case signal(RankFrame)
        case wouldBlock
        /// End of stream, a goodbye, or a read error.
        case closed
        /// The sender broke the protocol.
        case failed(NodeError)
    }

    var input: ByteInput
    private var decoder: RankFrameDecoder
    let hasRing: Bool
    private var ended = false
    /// Why the sender was cut off, kept: a second drain racing the first must see the same
    /// failure, not a plain end of stream (which would lose the error and leave its waiters waiting).
    private var failure: NodeError?
    /// Bytes taken from the socket so far (lets a reader see whether data is still flowing).
    private(set) var bytesRead = 0

    init(input: ByteInput, decoder: RankFrameDecoder) {
        self.input = input
        self.decoder = decoder
        hasRing = input.ring != nil
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
            // What the read did (it stays end of stream if the decoder had no room to read into).
            var outcome = IOResult.endOfStream
            switch step {
            case .frame(let frame, let payload, let array): return .frame(frame, payload, array)
            case .signal(let frame): return .signal(frame)
            case .goodbye:
                ended = true
                return .closed
            case .needBytes where !hasRing:
                // A plain socket is read by its descriptor alone: no input to move out and back
                // (a spinning receive comes here once for every read that finds nothing).
                let fd = input.fd
                _ = decoder.readIntoBuffer { Self.readSocket(fd, into: $0, &outcome) }
            case .needPayload where !hasRing:
                let fd = input.fd
                _ = decoder.readIntoPayload { Self.readSocket(fd, into: $0, &outcome) }
            case .needBytes, .needPayload:
                // The input is moved out for the read (the closure may not reach `self` while the
                // decoder is being changed) and back, by swapping: a copy of it would retain and
                // release the ring's mapping and copy its failure, for every read.
                var source = ByteInput(fd: input.fd, ring: nil)
                swap(&source, &input)
                if case .needBytes = step {
                    _ = decoder.readIntoBuffer { Self.read(&source, into: $0, &outcome) }
                } else {
                    _ = decoder.readIntoPayload { Self.read(&source, into: $0, &outcome) }
                }
                swap(&source, &input)
            }
            switch outcome {
            case .bytes(let n): bytesRead += n
            case .wouldBlock: return .wouldBlock
            case .endOfStream:
                ended = true
                if let error = input.failure {
                    failure = error
                    return .failed(error)
                }
            }
        }
        return .closed
    }

    /// The next frame when it lies whole and in one piece in the ring, small, and the decoder
    /// holds nothing: checked as the decoder checks it and made into its value straight from the
    /// ring, without the copy into the decoder's buffer and the decoder's steps; `.wouldBlock`
    /// when the decoder holds nothing and the ring is empty (and not to look at the socket).
    /// Nil otherwise (then `next()` takes whatever comes, and meets any bad header itself).
    mutating func nextFromRing() -> Step? {
        guard !ended, failure == nil, decoder.isAtFrameBoundary, var ring = input.ring else { return nil }
        // An empty ring that is not to look at the socket has nothing more for the decoder either.
        if !input.watchSocket, !input.socketEnded, let unread = try? ring.hasUnread(), !unread { return .wouldBlock }  // Bad ring: next().
        let source = decoder.source
        let limit = min(decoder.maxMessageBytes, RankFrameDecoder.directThreshold)
        let peeked = try? ring.inPlace(RankFrame.headerSize) { raw in (0, Self.header(raw, source: source, limit: limit)) }  // Bad ring: `next()`.
        guard let peeked, let frame = peeked.result else { return nil }
        let total = RankFrame.headerSize + frame.length
        // Made in the closure and kept outside it (not returned through `inPlace`'s generic
        // result, whose copies would go through the runtime's type metadata).
        var payload: [UInt8] = []
        var array: HeldArray?
        let taken = try? ring.inPlace(total) { raw in  // A bad ring: `next()` reports it.
            (payload, array) = RankFrameDecoder.value(of: frame, payload: UnsafeRawBufferPointer(rebasing: raw[RankFrame.headerSize...]))
            return (total, ())
        }
        guard let taken else { return nil }
        input.ring = ring
        bytesRead += total
        if taken.wake { Doorbell.ring(input.fd) }
        return .frame(frame, payload, array)
    }

    /// The message header in `raw`, when it is one the decoder accepts with a payload of at most
    /// `limit` bytes; nil otherwise (a bad header, a goodbye, a large frame: `next()` takes those).
    private static func header(_ raw: UnsafeRawBufferPointer, source: Int, limit: Int) -> RankFrame? {
        do {
            let frame = try RankFrameDecoder.parseHeader(raw, source: source, maxMessageBytes: limit)
            return frame?.isSignal == true ? nil : frame
        } catch { return nil }
    }

    /// One read that never waits, for the decoder's `readInto...`: the byte count it moved (0
    /// otherwise), and in `outcome` what happened.
    @inline(__always)
    private static func read(_ input: inout ByteInput, into space: UnsafeMutableRawBufferPointer, _ outcome: inout IOResult) -> Int {
        outcome = input.read(into: space)
        if case .bytes(let n) = outcome { return n }
        return 0
    }

    @inline(__always)
    private static func readSocket(_ fd: Int32, into space: UnsafeMutableRawBufferPointer, _ outcome: inout IOResult) -> Int {
        outcome = ByteInput.readSocket(fd, into: space)
        if case .bytes(let n) = outcome { return n }
        return 0
    }
}
