import Dispatch
import Synchronization
import Testing

@testable import DistrCore

/// The synchronous fast paths of messaging: a send that writes its whole frame into the ring
/// without suspending (or, on a socket, what the kernel takes of a small frame), a receive that
/// takes a small frame straight from the ring, and every case where they step aside for the
/// general path.
@Suite(.hangGuard) struct RingFastPathTests {
    static var empty: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    /// A frame reader over `ring` whose empty ring does not look at a socket.
    static func frameReader(_ ring: TestRing, maxMessageBytes: Int = 1 << 20) -> FrameStreamReader {
        var input = ByteInput(fd: -1, ring: ring.reader())
        input.watchSocket = false
        return FrameStreamReader(input: input, decoder: RankFrameDecoder(source: 1, maxMessageBytes: maxMessageBytes))
    }

    static func bytes(of frame: RankFrame, _ payload: [UInt8]) -> [UInt8] { frame.header() + payload }

    // MARK: The ring's whole-or-nothing write and in-place look

    @Test func writeWhole_writesAFrameWholeOrNotAtAll() throws {
        let ring = TestRing()
        var writer = ring.writer()
        var reader = ring.reader()
        let filler = [UInt8](repeating: 1, count: 4000)
        #expect(try writer.write(filler).count == filler.count)
        let frame = Self.bytes(of: RankFrame(encoding: .bytes, tag: 0, length: 176), [UInt8](repeating: 2, count: 176))
        let refused = try frame.withUnsafeBytes { try writer.writeWhole($0, Self.empty) }
        #expect(!refused.written)
        #expect(writer.head == UInt64(filler.count))
        #expect(try reader.read(4096) == filler)
        let accepted = try frame.withUnsafeBytes { raw in
            try writer.writeWhole(
                UnsafeRawBufferPointer(rebasing: raw[..<RankFrame.headerSize]), UnsafeRawBufferPointer(rebasing: raw[RankFrame.headerSize...]))
        }
        #expect(accepted.written)
        #expect(try reader.read(4096) == frame)
    }

    @Test func inPlace_showsOnlyUnreadBytesInOnePieceAndFreesWhatIsTaken() throws {
        let ring = TestRing()
        var writer = ring.writer()
        var reader = ring.reader()
        #expect(try reader.inPlace(8) { _ in (0, 0) } == nil)
        #expect(try writer.write([UInt8](0..<100)).count == 100)
        let seen = try reader.inPlace(10) { raw in (4, Array(raw)) }
        #expect(seen?.result == [UInt8](0..<10))
        #expect(reader.tail == 4)
        #expect(try reader.inPlace(97) { _ in (0, 0) } == nil)
        #expect(try reader.read(96) == [UInt8](4..<100))
        // Unread bytes that wrap past the end of the data area are not shown in place.
        #expect(try writer.write([UInt8](repeating: 3, count: 4050)).count == 4050)
        #expect(try reader.read(3990).count == 3990)
        #expect(try reader.inPlace(10) { _ in (10, 0) } == nil)
        #expect(reader.tail == 4090)
        #expect(try reader.inPlace(6) { _ in (6, 0) } != nil)
        #expect(reader.tail == 4096)
    }

    // MARK: Receiving: a small frame straight from the ring

    @Test func frameReader_takesASmallWholeFrameStraightFromTheRing() throws {
        let ring = TestRing()
        var writer = ring.writer()
        var frames = Self.frameReader(ring)
        let values: [Double] = [1.5, -2.25]
        let frame = RankFrame(encoding: .numeric, element: Double.wireCode, tag: 7, length: 16)
        _ = try writer.write(Self.bytes(of: frame, values.withUnsafeBytes { Array($0) }))
        _ = try writer.write(Self.bytes(of: RankFrame(encoding: .bytes, tag: 8, length: 3), [4, 5, 6]))
        guard case .frame(let first, _, let array)? = frames.nextFromRing() else {
            Issue.record("the first frame was not taken from the ring")
            return
        }
        #expect(first == frame)
        #expect(array?.value as? [Double] == values)
        guard case .frame(let second, let payload, nil)? = frames.nextFromRing() else {
            Issue.record("the second frame was not taken from the ring")
            return
        }
        #expect(second.tag == 8 && payload == [4, 5, 6])
        #expect(frames.bytesRead == 2 * RankFrame.headerSize + 19)
        // Empty, and nothing held by the decoder: no need to ask it.
        guard case .wouldBlock? = frames.nextFromRing() else {
            Issue.record("an empty ring was not seen as such")
            return
        }
        guard case .wouldBlock = frames.next() else {
            Issue.record("bytes were left over")
            return
        }
    }

    @Test func frameReader_leavesAFrameThatWrapsTheRingToTheDecoder() throws {
        let ring = TestRing()
        var writer = ring.writer()
        var frames = Self.frameReader(ring)
        // Move both indices to 10 bytes before the end of the data area.
        var skip = ring.reader()
        _ = try writer.write([UInt8](repeating: 0, count: 4086))
        _ = try skip.read(4086)
        frames.input.ring = skip
        _ = try writer.write(Self.bytes(of: RankFrame(encoding: .bytes, tag: 1, length: 5), [1, 2, 3, 4, 5]))
        #expect(frames.nextFromRing() == nil)
        guard case .frame(let frame, let payload, _) = frames.next() else {
            Issue.record("the decoder did not read the wrapped frame")
            return
        }
        #expect(frame.tag == 1 && payload == [1, 2, 3, 4, 5])
    }

    @Test func frameReader_leavesLargeBadAndPartialFramesToTheDecoder() throws {
        let ring = TestRing(capacity: 1 << 17)
        var writer = ring.writer()
        var frames = Self.frameReader(ring)
        // Larger than a frame taken in place: the decoder reads it into its own array.
        let large = [UInt8](repeating: 9, count: RankFrameDecoder.directThreshold + 1)
        _ = try writer.write(Self.bytes(of: RankFrame(encoding: .bytes, tag: 2, length: large.count), large))
        #expect(frames.nextFromRing() == nil)
        guard case .frame(_, let payload, _) = frames.next() else {
            Issue.record("the large frame was not read")
            return
        }
        #expect(payload == large)
        // A header cut short: the rest comes later, and the decoder holds the start meanwhile.
        let whole = Self.bytes(of: RankFrame(encoding: .bytes, tag: 3, length: 2), [7, 8])
        _ = try writer.write(Array(whole[..<10]))
        #expect(frames.nextFromRing() == nil)
        guard case .wouldBlock = frames.next() else {
            Issue.record("a partial header made a frame")
            return
        }
        _ = try writer.write(Array(whole[10...]))
        #expect(frames.nextFromRing() == nil)
        guard case .frame(let frame, _, _) = frames.next() else {
            Issue.record("the completed frame was not read")
            return
        }
        #expect(frame.tag == 3)
        // A header no format allows: the decoder meets it and reports it, naming the sender.
        _ = try writer.write([9] + [UInt8](repeating: 0, count: RankFrame.headerSize - 1))
        #expect(frames.nextFromRing() == nil)
        guard case .failed(.badFrame(rank: 1, detail: _)) = frames.next() else {
            Issue.record("the bad header was not reported")
            return
        }
    }

    // MARK: Sending: a whole frame into the ring without suspending

    @Test func ringLink_sendNowWritesWholeFramesAndLeavesWhatDoesNotFitToSend() async throws {
        let connection = try RingConnection(count: 2, from: 1)
        let node = connection.node
        defer { FD.close(connection.segment) }
        // The link owns (and closes) the sending socket.
        let link = OutgoingLink(fd: connection.theirs, rank: 0, ring: RingWriter(memory: connection.sending, peer: 0), spinBudget: 0)
        let small: [UInt8] = [1, 2, 3]
        #expect(try small.withUnsafeBytes { try link.sendNow(RankFrame(encoding: .bytes, tag: 1, length: 3), body: $0) })
        // Larger than the ring: nothing is written, and the `async` send takes it in pieces.
        let big = [UInt8](repeating: 9, count: 70_000)
        let bigFrame = RankFrame(encoding: .bytes, tag: 2, length: big.count)
        #expect(try !big.withUnsafeBytes { try link.sendNow(bigFrame, body: $0) })
        #expect(SharedWord.loadAcquire(connection.sending.base, SharedRing.headOffset) == UInt64(RankFrame.headerSize + small.count))
        try await link.send(header: bigFrame.header(), body: .bytes(big))
        #expect(try await node.recvBytes(from: 1, tag: 1).value == small)
        #expect(try await node.recvBytes(from: 1, tag: 2).value == big)
    }

    @Test func ringLink_sendNowDoesNotOvertakeASendThatWaitsForRoom() async throws {
        let ring = TestRing()
        let (mine, theirs) = try FD.socketPair()
        defer { FD.close(theirs) }
        let link = OutgoingLink(fd: mine, rank: 1, ring: ring.writer(), spinBudget: 0)
        // Nobody reads: the big send fills the ring and its writer thread waits for room.
        let big = [UInt8](repeating: 5, count: 10_000)
        let sending = Task { try await link.send(header: RankFrame(encoding: .bytes, tag: 1, length: big.count).header(), body: .bytes(big)) }
        while SharedWord.loadAcquire(ring.base, SharedRing.headOffset) < UInt64(ring.capacity) { await Task.yield() }
        let small: [UInt8] = [7]
        let smallFrame = RankFrame(encoding: .bytes, tag: 2, length: 1)
        #expect(try !small.withUnsafeBytes { try link.sendNow(smallFrame, body: $0) })
        // Read it all as a receiver does, ringing back when the writer asked.
        var reader = ring.reader()
        var received: [UInt8] = []
        while received.count < RankFrame.headerSize + big.count {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let (count, wake) = try chunk.withUnsafeMutableBytes { try reader.read(into: $0) }
            received += chunk.prefix(count)
            if wake { Doorbell.ring(theirs) }
            if count == 0 { await Task.yield() }
        }
        try await sending.value
        #expect(received == Self.bytes(of: RankFrame(encoding: .bytes, tag: 1, length: big.count), big))
        // Idle again: the small frame goes the fast way, after the big one.
        #expect(try small.withUnsafeBytes { try link.sendNow(smallFrame, body: $0) })
        #expect(try reader.read(4096) == Self.bytes(of: smallFrame, small))
    }

    // MARK: How a large frame is written

    @Test(arguments: [8, 65536, 65536 + 1, 200_000])
    func socketLink_firstWriteCarriesTheHeaderAndAtMost64KiB_theNextOnesTheRest(size: Int) async throws {
        // A SOCK_SEQPACKET pair keeps each write a record of its own, so the reads below see
        // how the link cut the frame into writes.
        let (mine, theirs) = try UnixSocket.pair(.seqpacket)
        defer { FD.close(theirs) }
        let link = OutgoingLink(fd: mine, rank: 1, spinBudget: 0)
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let frame = RankFrame(encoding: .bytes, tag: 5, length: size)
        try await link.send(header: frame.header(), body: .bytes(payload))
        var records: [[UInt8]] = []
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while received < RankFrame.headerSize + size {
            let n = try FD.read(theirs, into: &buffer)
            try #require(n > 0)
            records.append(Array(buffer[..<n]))
            received += n
        }
        let first = RankFrame.headerSize + min(size, OutgoingLink.firstWriteLimit)
        #expect(records.first?.count == first)
        #expect(records.dropFirst().allSatisfy { $0.count <= size })
        #expect(records.count == (size > OutgoingLink.firstWriteLimit ? 2 : 1))
        #expect(Array(records.joined().dropFirst(RankFrame.headerSize)) == payload)
    }

    // MARK: Sending on a socket without suspending

    /// `contiguous`: bodies of at most `OutgoingLink.contiguousSendLimit` bytes, which go out
    /// copied behind their header in one `send`; otherwise larger ones, in a `writev`.
    @Test(arguments: [false, true])
    func socketLink_sendNowWritesWhatTheSocketTakesAndTheWriterThreadTheRestInOrder(contiguous: Bool) async throws {
        // TCP on loopback: a nonblocking write into a nearly full socket takes part of a frame.
        #expect(1_000 + 12 * 231 <= OutgoingLink.contiguousSendLimit && 9_000 > OutgoingLink.contiguousSendLimit)
        let (listener, address) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        defer { FD.close(listener) }
        let mine = try TCPSocket.connect(host: "127.0.0.1", port: address.port, timeout: 10)
        let theirs = try TCPSocket.accept(listener)
        defer { FD.close(theirs) }
        // A lost rest of a frame fails a read below instead of hanging it.
        TCPSocket.setReceiveTimeout(theirs, seconds: 10)
        let link = OutgoingLink(fd: mine, rank: 1, spinBudget: 0)
        // Nobody reads yet: frames go in until the socket takes nothing more, or only part of
        // one (whose rest waits for room, holding the link).
        var payloads: [[UInt8]] = []
        var rest: OutgoingLink.Immediate?
        while rest == nil {
            let index = payloads.count
            let count = contiguous ? 1_000 + index % 13 * 231 : 9_000 + index % 13 * 77
            let payload = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: count)
            let frame = RankFrame(encoding: .bytes, tag: index, length: payload.count)
            switch try payload.withUnsafeBytes({ try link.writeNow(frame, body: $0) }) {
            case .sent: payloads.append(payload)
            case .declined: rest = .declined
            case .partly(let held, let pending):
                payloads.append(payload)
                rest = .partly(held, pending)
            }
            try #require(payloads.count < 100_000, "the socket never filled")
        }
        // While the link is held, nothing else is written on the socket, even when it has room
        // again (the receiver read some of it).
        var taken: [UInt8] = []
        if case .partly = rest {
            // Read until the sending socket can be written (the kernel asks for a good share of
            // its buffer free first); bounded by what was sent.
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let socket = [mine]
            while try !socket.withUnsafeBufferPointer({ try FD.wait(for: $0, writing: true, seconds: 0.01) }) {
                let n = try FD.read(theirs, into: &chunk)
                try #require(n > 0 && taken.count < payloads.reduce(0) { $0 + $1.count + RankFrame.headerSize })
                taken += chunk[..<n]
            }
            let small: [UInt8] = [1]
            let smallFrame = RankFrame(encoding: .bytes, tag: 0, length: 1)
            #expect(try small.withUnsafeBytes { try link.writeNow(smallFrame, body: $0) }.isDeclined)
        }
        // The rest goes once a reader drains the socket. The reader is a thread of its own, and
        // the rest is handed to the link's writer thread before this task suspends: neither
        // waits for the cooperative pool, which a full test run keeps busy for a minute and more.
        let expected = payloads.count
        let reader = TestThread { [taken] in try Self.readFrames(theirs, count: expected, after: taken) }
        if case .partly = rest { #expect(try await rest?.completed() == true) }
        let received = try await reader.value()
        #expect(received.map(\.tag) == Array(payloads.indices))
        #expect(received.map(\.payload) == payloads)
        // Idle again: the next send goes the fast way, after all of it.
        let last = [UInt8](repeating: 0xEE, count: 100)
        let lastFrame = RankFrame(encoding: .bytes, tag: expected, length: last.count)
        #expect(try await last.withUnsafeBytes { try link.writeNow(lastFrame, body: $0) }.completed())
        let tail = try Self.readFrames(theirs, count: 1)
        #expect(tail.map(\.tag) == [expected] && tail.map(\.payload) == [last])
    }

    /// Reads `count` frames from the blocking socket `fd`, whose first bytes were `taken` already.
    static func readFrames(_ fd: Int32, count: Int, after taken: [UInt8] = []) throws -> [(tag: Int, payload: [UInt8])] {
        var decoder = RankFrameDecoder(source: 1)
        decoder.append(taken)
        var received: [(tag: Int, payload: [UInt8])] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while received.count < count {
            switch try decoder.next() {
            case .frame(let frame, let payload, _): received.append((frame.tag, payload))
            case .needBytes, .needPayload:
                let n = try FD.read(fd, into: &chunk)
                guard n > 0 else { throw SystemError("read", errno: 0) }
                chunk.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            case .goodbye, .signal: return received
            }
        }
        return received
    }

    // MARK: The mailbox's change count, which a spinning receive watches

    @Test func mailbox_changeCountMovesWhenASpinningReceiveMustLookAgain() throws {
        let mailbox = Mailbox(selfRank: 0, count: 3)
        var last = mailbox.changeCount
        func changed() -> Bool {
            defer { last = mailbox.changeCount }
            return mailbox.changeCount != last
        }
        mailbox.deliver(try PeerInputTests.envelope(5, from: 1, tag: 0))
        #expect(changed())
        #expect(mailbox.take(source: 1, tag: 0) != nil)
        #expect(!changed())
        mailbox.connectionOpened(from: 2)
        #expect(!changed())
        mailbox.connectionClosed(from: 2)
        #expect(changed())
        mailbox.peerExited(1, status: 0)
        #expect(changed())
        mailbox.abort("the job is being ended")
        #expect(changed())
    }

    @Test func aReceiveFromAnyRankWatchingARingTakesAMessageThisRankSendsItself() async throws {
        let connection = try RingConnection(count: 2, from: 1)
        let node = connection.node
        defer { connection.close() }
        for round in 0..<20 {
            let waiting = Task { try await node.recvMessage(Int.self) }
            try await node.send(round, to: 0)
            let message = try await waiting.value
            #expect(message.value == round && message.source == 0)
        }
    }
}

/// Runs `body` on a thread of its own at once; `value()` waits for its result.
final class TestThread<T: Sendable>: Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let result = Mutex<Result<T, any Error>?>(nil)

    init(_ body: @escaping @Sendable () throws -> T) {
        Threads.start(name: "test-thread") { [self] in
            result.withLock { $0 = Result { try body() } }
            done.signal()
        }
    }

    func value() async throws -> T {
        try await onDedicatedThread(name: "test-wait") { [self] in
            done.wait()
            return try result.withLock { $0! }.get()
        }
    }
}

extension OutgoingLink.Immediate {
    var isDeclined: Bool {
        if case .declined = self { return true }
        return false
    }
}
