import Testing

@testable import DistrCore

@Suite struct BinaryCoderTests {
    struct Inner: Codable, Equatable, Sendable {
        var flag: Bool
        var small: Int8
        var unsigned: UInt16
    }

    enum Shape: Codable, Equatable, Sendable {
        case circle(radius: Double)
        case square(Int)
        case none
    }

    struct Everything: Codable, Equatable, Sendable {
        var int: Int
        var double: Double
        var float: Float
        var text: String
        var optionalPresent: String?
        var optionalMissing: Int?
        var numbers: [Double]
        var words: [String]
        var nested: [[Int]]
        var inner: Inner
        var map: [String: Inner]
        var shapes: [Shape]
        var optionals: [Int?]
        var bytes: [UInt8]
    }

    @Test func roundTripsNestedValues() throws {
        let value = Everything(
            int: -42, double: 3.25, float: 1.5, text: "héllo", optionalPresent: "yes", optionalMissing: nil, numbers: [1, 2.5],
            words: ["a", ""], nested: [[1], [], [2, 3]], inner: Inner(flag: true, small: -3, unsigned: 65535),
            map: ["k": Inner(flag: false, small: 1, unsigned: 2)], shapes: [.circle(radius: 2), .square(3), .none],
            optionals: [1, nil, 3], bytes: [0, 255])
        let bytes = try BinaryEncoder().encode(value)
        #expect(try BinaryDecoder().decode(Everything.self, from: bytes) == value)
    }

    @Test func numericArraysAreRawMemory() throws {
        let bytes = try BinaryEncoder().encode([1.0, 2.0] as [Double])
        #expect(bytes.count == 4 + 16)
    }

    @Test func truncatedOrPaddedInputIsAnErrorNotACrash() throws {
        let bytes = try BinaryEncoder().encode(["abc", "def"])
        for cut in 0..<bytes.count {
            #expect(throws: (any Error).self) { try BinaryDecoder().decode([String].self, from: Array(bytes.prefix(cut))) }
        }
        #expect(throws: (any Error).self) { try BinaryDecoder().decode([String].self, from: bytes + [0]) }
        // A count far beyond the data must not allocate.
        #expect(throws: (any Error).self) { try BinaryDecoder().decode([Int].self, from: [0xff, 0xff, 0xff, 0x7f]) }
        #expect(throws: (any Error).self) { try BinaryDecoder().decode(Bool.self, from: [7]) }
    }

    @Test func decodeReportsTypeMismatchClearly() throws {
        let text = try BinaryEncoder().encode("hello")
        let envelope = Envelope(
            source: 2, frame: RankFrame(encoding: .codable, fingerprint: RankFrame.fingerprint(of: String.self), tag: 4, length: text.count),
            payload: text)
        #expect(try Node.decode(String.self, envelope) == "hello")
        #expect(throws: NodeError.typeMismatch(expected: "Int", source: 2, tag: 4, detail: "it was sent as a different type")) {
            try Node.decode(Int.self, envelope)
        }
        #expect(throws: NodeError.self) { try Node.decode([Double].self, envelope) }
    }

    @Test func barrierTakesAnEmptyMessageOrTrueAndNamesAnythingElse() throws {
        try Node.checkBarrierMessage(Envelope(source: 1, frame: RankFrame(encoding: .bytes, tag: -5, length: 0), payload: []))
        // A Python rank's `True`.
        let yes = try BinaryEncoder().encode(true)
        try Node.checkBarrierMessage(
            Envelope(
                source: 1, frame: RankFrame(encoding: .codable, fingerprint: RankFrame.fingerprint(of: Bool.self), tag: -5, length: yes.count),
                payload: yes))
        // Another collective's message: a broadcast's Int, raw bytes, an array.
        let five = try BinaryEncoder().encode(5)
        let others = [
            Envelope(
                source: 1, frame: RankFrame(encoding: .codable, fingerprint: RankFrame.fingerprint(of: Int.self), tag: -5, length: five.count),
                payload: five),
            Envelope(source: 1, frame: RankFrame(encoding: .bytes, tag: -5, length: 2), payload: [1, 2]),
            Envelope(source: 1, frame: RankFrame(encoding: .numeric, element: Double.wireCode, tag: -5, length: 8), payload: [], array: [1.5]),
        ]
        for other in others {
            #expect(throws: NodeError.self) { try Node.checkBarrierMessage(other) }
        }
        #expect(throws: NodeError.typeMismatch(expected: "Bool", source: 1, tag: -5, detail: "it was sent as a different type")) {
            try Node.checkBarrierMessage(others[0])
        }
    }

    @Test func decodeOfAPickledPythonObjectNamesTheSenderAndWhatSwiftReceives() throws {
        let pickled = Envelope(source: 3, frame: RankFrame(encoding: .pickle, tag: 6, length: 3), payload: [0x80, 0x05, 0x4e])
        for decode in [{ _ = try Node.decode(String.self, pickled) }, { _ = try Node.decode([UInt8].self, pickled) }] {
            #expect(throws: NodeError.pickledValue(source: 3, tag: 6), performing: decode)
        }
        #expect(
            NodeError.pickledValue(source: 3, tag: 6).description.hasPrefix(
                "rank 3 sent a pickled Python object (tag 6); a Swift rank receives str, int, float, bool, bytes"))
    }
}

@Suite struct MailboxTests {
    func envelope(from source: Int, tag: Int, _ value: Int) -> Envelope {
        let bytes = (try? BinaryEncoder().encode(value)) ?? []
        return Envelope(source: source, frame: RankFrame(encoding: .codable, tag: tag, length: bytes.count), payload: bytes)
    }

    @Test func matchesBySourceAndTagInArrivalOrder() async throws {
        let mailbox = Mailbox(selfRank: 0, count: 3)
        mailbox.deliver(envelope(from: 1, tag: 5, 10))
        mailbox.deliver(envelope(from: 2, tag: 5, 20))
        mailbox.deliver(envelope(from: 1, tag: 6, 11))
        #expect(try await mailbox.receive(source: 1, tag: 6).source == 1)
        #expect(try Node.decode(Int.self, try await mailbox.receive(source: nil, tag: 5)) == 10)
        #expect(try await mailbox.receive(source: nil, tag: nil).source == 2)
    }

    @Test func aReceiveKeepsTheFrameItReadOnlyWhenNoOlderMatchIsQueued() throws {
        let mailbox = Mailbox(selfRank: 0, count: 3)
        // Nothing queued: the reader keeps its match, and the mailbox never holds it.
        let kept = mailbox.deliver(envelope(from: 1, tag: 5, 10), claimingFor: 1, tag: 5)
        #expect(try kept.map { try Node.decode(Int.self, $0) } == 10)
        #expect(!mailbox.holds(source: 1, tag: 5))
        // Not a match: delivered as usual.
        #expect(mailbox.deliver(envelope(from: 1, tag: 6, 11), claimingFor: 1, tag: 5) == nil)
        #expect(mailbox.holds(source: 1, tag: 6))
        // An older match queued (delivered by another reader): the new one queues behind it,
        // so the receive takes them in the order they were sent.
        mailbox.deliver(envelope(from: 1, tag: 5, 12))
        #expect(mailbox.deliver(envelope(from: 1, tag: 5, 13), claimingFor: 1, tag: 5) == nil)
        #expect(try mailbox.take(source: 1, tag: 5).map { try Node.decode(Int.self, $0) } == 12)
        #expect(try mailbox.take(source: 1, tag: 5).map { try Node.decode(Int.self, $0) } == 13)
    }

    /// A receive that parked first gets the message, not a later one that read it itself.
    @Test func aReceiveDoesNotKeepAFrameAnEarlierWaitingReceiveWants() async throws {
        let mailbox = Mailbox(selfRank: 0, count: 2)
        let earlier = Task { try await mailbox.receive(source: 1, tag: 5) }
        try await waitForWaiters(mailbox, 1)
        let kept = mailbox.deliver(envelope(from: 1, tag: 5, 20), claimingFor: 1, tag: 5)
        #expect(kept == nil)
        // Kept wrongly: the earlier receive would wait for ever; cancelling ends it.
        if kept != nil { earlier.cancel() }
        let received = try? await earlier.value  // Cancelled: the failure is the expectation above.
        #expect(try received.map { try Node.decode(Int.self, $0) } == 20)
    }

    /// What carries a received array holds it by reference: an `any RawNumericArray` stored
    /// inline (40 bytes) makes its holder address-only, copied through the runtime's value
    /// witnesses on every message (docs/performance.md, "Same-node messaging").
    @Test func receivedArraysAreHeldByReference() throws {
        #expect(MemoryLayout<HeldArray?>.size == MemoryLayout<Int>.size)
        #expect(MemoryLayout<RankFrameDecoder.FillingArray?>.size == MemoryLayout<Int>.size)
        // source, payload and array: three words, and the frame.
        #expect(MemoryLayout<Envelope>.size == 3 * MemoryLayout<Int>.size + MemoryLayout<RankFrame>.size)
        // The box hands out the array it was given, and the envelope sees it through the box.
        let frame = RankFrame(encoding: .numeric, element: Double.wireCode, tag: 0, length: 16)
        let envelope = Envelope(source: 1, frame: frame, payload: [], array: [1.5, 2.5])
        #expect(envelope.array as? [Double] == [1.5, 2.5])
        #expect(try Node.decode([Double].self, envelope) == [1.5, 2.5])
    }

    @Test func numericArraysAreRecognisedByTheirTypeWithoutACast() {
        #expect(RawNumericTypes.arrayTypes.count == RawNumericTypes.byCode.count)
        #expect(Set(RawNumericTypes.byCode.keys) == Set(1...12))
        for (code, arrayType) in RawNumericTypes.byCode {
            #expect(RawNumericTypes.elementSize(code: code) == arrayType.elementSize)
            #expect(RawNumericTypes.uninitialized(code: code, count: 3).map { type(of: $0) == arrayType } == true)
        }
        #expect(RawNumericTypes.elementSize(code: 0) == nil && RawNumericTypes.uninitialized(code: 13, count: 1) == nil)
        #expect(RawNumericTypes.array([1.5, 2.5]).flatMap { $0 as? [Double] } == [1.5, 2.5])
        #expect(RawNumericTypes.array([UInt16(7)]).flatMap { $0 as? [UInt16] } == [7])
        #expect(RawNumericTypes.array("text") == nil && RawNumericTypes.array([[1.5]]) == nil)
        #expect(RawNumericTypes.isExactly([Int32(4)], [Int32].self))
        #expect(RawNumericTypes.unsafeCast([Int32(4)], to: [Int32].self) == [4])
        #expect(!RawNumericTypes.isExactly([Int32(4)], [Int64].self) && !RawNumericTypes.isExactly([Int32(4)], Int32.self))
    }

    /// A received array is copied out of the ring or buffer wherever its bytes lie: aligned for
    /// the element type (copied as typed elements) or not (copied as bytes).
    @Test func numericArrays_fromRawBytes_alignedOrNot() {
        let values: [Double] = [1.5, -2.25, 1e300]
        let bytes = values.withUnsafeBytes { [UInt8]($0) }
        for offset in 0..<8 {
            var buffer = [UInt8](repeating: 0xEE, count: offset) + bytes + [0xEE]
            buffer.withUnsafeMutableBytes { raw in
                let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + bytes.count])
                #expect([Double].fromRawBytes(slice) == values)
                #expect(RawNumericTypes.copy(code: 1, of: slice).flatMap { $0 as? [Double] } == values)
                #expect([UInt8].fromRawBytes(slice) == bytes)
                #expect([Int16].fromRawBytes(slice).map { $0.count } == 12)
                #expect([Double].fromRawBytes(UnsafeRawBufferPointer(rebasing: slice.dropLast())) == nil)
            }
        }
        #expect([Int32].fromRawBytes(UnsafeRawBufferPointer(start: nil, count: 0)) == [])
    }

    @Test func anyTagNeverTakesCollectiveMessages() async throws {
        let mailbox = Mailbox(selfRank: 0, count: 2)
        mailbox.deliver(envelope(from: 1, tag: -3, 1))
        mailbox.peerExited(1, status: 0)
        mailbox.connectionClosed(from: 1)
        await #expect(throws: NodeError.allPeersExited) { try await mailbox.receive(source: nil, tag: nil) }
        #expect(try await mailbox.receive(source: 1, tag: -3).frame.tag == -3)
    }

    @Test func waitingReceiveFailsWhenTheSenderExitsWithItsConnectionClosed() async throws {
        let mailbox = Mailbox(selfRank: 0, count: 2)
        mailbox.connectionOpened(from: 1)
        async let waiting = mailbox.receive(source: 1, tag: 0)
        try await waitForWaiters(mailbox, 1)
        mailbox.peerExited(1, status: 3)
        // Still open: what it sent may be in flight.
        mailbox.deliver(envelope(from: 1, tag: 0, 7))
        #expect(try await waiting.source == 1)
        mailbox.connectionClosed(from: 1)
        await #expect(throws: NodeError.peerExited(rank: 1, status: 3)) { try await mailbox.receive(source: 1, tag: 0) }
    }

    /// Yields until `count` receives are parked in `mailbox` (bounded), so a test reaches the
    /// waiting path rather than the check made before parking.
    func waitForWaiters(_ mailbox: Mailbox, _ count: Int) async throws {
        let deadline = Deadline.after(20)
        while mailbox.waiterCount < count {
            try #require(!deadline.hasPassed, "receives never parked")
            await Task.yield()
        }
    }

    @Test func abortFailsEveryWaiter() async throws {
        let mailbox = Mailbox(selfRank: 0, count: 2)
        let first = Task { try await mailbox.receive(source: 1, tag: 0) }
        let second = Task { try await mailbox.receive(source: nil, tag: nil) }
        try await waitForWaiters(mailbox, 2)
        mailbox.abort("stop")
        await #expect(throws: NodeError.aborted("stop")) { try await first.value }
        await #expect(throws: NodeError.aborted("stop")) { try await second.value }
    }

    @Test func cancellationRemovesTheWaiter() async throws {
        let mailbox = Mailbox(selfRank: 0, count: 2)
        let task = Task { try await mailbox.receive(source: 1, tag: 0) }
        try await waitForWaiters(mailbox, 1)
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(mailbox.waiterCount == 0)
    }

    /// A progress thread and one socket channel from rank 1 (not yet added), whose other end
    /// writes rank 1's frames.
    final class ProgressRig {
        let mailbox = Mailbox(selfRank: 0, count: 2)
        let progress: ProgressThread
        let channel: IncomingChannel
        private let peerFD: Int32
        private var peer: FileDescriptor?

        init() throws {
            progress = try ProgressThread(mailbox: mailbox)
            let (a, b) = try FD.socketPair()
            peerFD = b
            peer = FileDescriptor(adopting: b)
            channel = IncomingChannel(fd: a, source: 1, pool: BufferPool())
        }

        func send(tag: Int, _ payload: [UInt8]) throws {
            try FD.writeAll(peerFD, RankFrame(encoding: .bytes, tag: tag, length: payload.count).header() + payload)
        }

        /// Ends the peer's side: shut down first, since a child process that another test spawns
        /// meanwhile holds a copy of every descriptor until its exec, and a close alone would
        /// then not end the stream (seen once in a parallel run: the drain found the socket
        /// empty, not ended).
        func closePeer() {
            try? Socket.shutdown(peerFD, .both)  // Cannot fail on an open, connected socket pair.
            peer = nil
        }

        var silencedCount: Int { progress.silencedCount.load(ordering: .sequentiallyConsistent) }
    }

    /// A receive that reads a socket itself takes it out of the progress thread's epoll set, and
    /// the thread puts it back when no receive reads it (its tick, or a receive that parks): it
    /// then reads for parked receives again. A second registration (a channel silenced before
    /// `add` registered it) is not taken for a kernel limit, which would abort the job.
    @Test(.hangGuard) func progressThread_readsASocketAgainAfterAReceiveSilencedIt() async throws {
        let rig = try ProgressRig()
        let (mailbox, progress) = (rig.mailbox, rig.progress)
        progress.arm(rig.channel, false)
        progress.arm(rig.channel, true)
        progress.add(rig.channel)
        progress.armSilenced()
        try rig.send(tag: 1, [1, 2, 3])
        #expect(try await mailbox.receive(source: 1, tag: 1).payload == [1, 2, 3])
        // Silenced by a receive as a spinning one does, then re-armed as one that parks does.
        progress.arm(rig.channel, false)
        progress.arm(rig.channel, true)
        let parked = Task { try await mailbox.receive(source: 1, tag: 2) }
        try await waitForWaiters(mailbox, 1)
        progress.armSilenced()
        try rig.send(tag: 2, [4, 5])
        #expect(try await parked.value.payload == [4, 5])
    }

    /// A channel that closed while silenced is forgotten by the next re-arm (it is not put back
    /// into the epoll set, and the thread does not tick for it for good).
    @Test func progressThread_forgetsASilencedChannelThatClosed() throws {
        let rig = try ProgressRig()
        rig.progress.add(rig.channel)
        rig.progress.arm(rig.channel, false)
        rig.progress.arm(rig.channel, true)
        #expect(rig.silencedCount == 1)
        rig.closePeer()
        #expect(rig.channel.drain(into: rig.mailbox) == .closed)
        rig.progress.armSilenced()
        #expect(rig.silencedCount == 0)
    }

    /// A receive that parks while another reads the socket itself has it read for it as soon as
    /// that reader stops, not at the progress thread's next tick.
    @Test(.hangGuard) func progressThread_reArmsASocketForAParkedReceiveWhenItsLastReaderStops() async throws {
        let rig = try ProgressRig()
        let (mailbox, progress) = (rig.mailbox, rig.progress)
        progress.add(rig.channel)
        progress.arm(rig.channel, false)
        let parked = Task { try await mailbox.receive(source: 1, tag: 5) { progress.armSilenced() } }
        try await waitForWaiters(mailbox, 1)
        progress.arm(rig.channel, true)
        #expect(rig.silencedCount == 0)
        try rig.send(tag: 5, [7])
        #expect(try await parked.value.payload == [7])
    }

    @Test func progressTick_lengthensWhileEverySilencedSocketIsReadAndShortensWhenOneIsIdle() {
        var tick = ProgressThread.Tick()
        #expect(tick.milliseconds == 1)
        var seen: [Int32] = []
        for _ in 0..<6 {
            tick.looked(rearmed: 0, silenced: 2)
            seen.append(tick.milliseconds)
        }
        #expect(seen == [2, 4, 8, 16, 16, 16])
        // A socket no receive read since the last look was re-armed: look again soon.
        tick.looked(rearmed: 1, silenced: 1)
        #expect(tick.milliseconds == 1)
        tick.looked(rearmed: 0, silenced: 1)
        #expect(tick.milliseconds == 2)
        // Nothing silenced any more: the next silencing starts from the shortest tick.
        tick.looked(rearmed: 0, silenced: 0)
        #expect(tick.milliseconds == 1)
    }

    @Test func reductionsCombineElementWise() {
        #expect(Reduction<[Double]>.sum.combine([1, 2], [3, 4]) == [4, 6])
        #expect(Reduction<[Int]>.max.combine([1, 5], [3, 4]) == [3, 5])
        #expect(Reduction<[Int]>.min.combine([1, 5, 9], [3, 4]) == [1, 4, 9])
        #expect(Reduction<Int>.product.combine(3, 4) == 12)
        #expect(Reduction<[Float]>.sum.elementwise == .add)
        #expect(Reduction<[Int8]>.max.elementwise == .maximum)
        #expect(Reduction<String>.custom { $0 + $1 }.elementwise == nil)
    }

    @Test func elementwiseKernels_matchTheScalarOperationForEveryElementType() {
        // Long enough for the vector loop and its remainder; the shorter operand's missing
        // elements are taken from the longer one.
        func check<E: RawNumeric & Numeric & Comparable>(_ make: (Int) -> E) {
            let a = (0..<37).map(make)
            let b = (0..<35).map { make(($0 * 7 + 3) % 11) }
            for (reduction, scalar) in [
                (Reduction<[E]>.sum, { (x: E, y: E) in x + y }), (.product, { $0 * $1 }), (.min, { Swift.min($0, $1) }),
                (.max, { Swift.max($0, $1) }),
            ] {
                let expected = (0..<37).map { $0 < 35 ? scalar(a[$0], b[$0]) : a[$0] }
                #expect(reduction.combine(a, b) == expected, "\(E.self)")
                #expect(reduction.combine(b, a) == (0..<37).map { $0 < 35 ? scalar(b[$0], a[$0]) : a[$0] }, "\(E.self)")
            }
        }
        check { Double($0) * 0.75 - 9 }
        check { Float($0) / 3 - 2 }
        check { Int($0 % 9) - 4 }
        check { Int64($0 % 9) - 4 }
        check { Int32($0 % 9) - 4 }
        check { Int16($0 % 9) - 4 }
        check { Int8($0 % 9) - 4 }
        check { UInt($0 % 9) }
        check { UInt64($0 % 9) }
        check { UInt32($0 % 9) }
        check { UInt16($0 % 9) }
        check { UInt8($0 % 9) }
    }

    @Test func elementwiseKernel_combinesInPlace() {
        var theirs: [Double] = [1, 2, 3, 4, 5]
        let mine: [Double] = [10, 20, 30, 40, 50]
        mine.withUnsafeBytes { a in
            theirs.withUnsafeMutableBytes { Double.combine(.add, a, UnsafeRawBufferPointer($0), into: $0, count: 4) }
        }
        #expect(theirs == [11, 22, 33, 44, 5])
    }
}

@Suite struct SocketSpinTests {
    @Test func spinning_staysOnWhileItCatchesMessagesAndStopsWhenItMisses() {
        let policy = SocketSpin()
        #expect(policy.spinSeconds() == SocketSpin.maxSeconds)
        for _ in 0..<10 { policy.record(caught: true) }
        #expect(policy.spinSeconds() == SocketSpin.maxSeconds)
        // One message that came only after the receive slept: no more spinning...
        policy.record(caught: false)
        for _ in 1..<SocketSpin.probeEvery { #expect(policy.spinSeconds() == 0) }
        // ...but a probe now and then, and one that catches its message turns spinning back on.
        #expect(policy.spinSeconds() > 0)
        #expect(policy.spinSeconds() == 0)
        policy.record(caught: true)
        #expect(policy.spinSeconds() == SocketSpin.maxSeconds)
    }

    /// A spin that has caught its message `trustedRun` times in a row outlives one miss (a round
    /// trip held up once by the scheduler), not two in a row; and the run starts over after a miss.
    @Test func spinning_afterALongRunOfCatches_outlivesOneMissButNotTwo() {
        let policy = SocketSpin()
        for _ in 0..<SocketSpin.trustedRun { policy.record(caught: true) }
        policy.record(caught: false)
        #expect(policy.spinSeconds() == SocketSpin.maxSeconds)
        policy.record(caught: false)
        #expect(policy.spinSeconds() == 0)
        // A probe's catch turns spinning back on, but a run of one forgives nothing.
        for _ in 2..<SocketSpin.probeEvery { #expect(policy.spinSeconds() == 0) }
        #expect(policy.spinSeconds() == SocketSpin.maxSeconds)
        policy.record(caught: true)
        policy.record(caught: false)
        #expect(policy.spinSeconds() == 0)
        // A run one short of trusted forgives nothing either.
        for _ in 1..<SocketSpin.probeEvery { _ = policy.spinSeconds() }
        for _ in 1..<SocketSpin.trustedRun { policy.record(caught: true) }
        policy.record(caught: false)
        #expect(policy.spinSeconds() == 0)
    }

    /// After spinning stopped, the answer a probe waits for comes from a peer that sleeps too: a
    /// blocking round trip (11-22 µs one way on an idle machine's loopback for 8 B to 64 KiB). A
    /// probe shorter than that never catches it, and spinning would never resume.
    @Test func probe_outlastsABlockingRoundTrip() {
        let policy = SocketSpin()
        policy.record(caught: false)
        var probe = 0.0
        for _ in 0..<SocketSpin.probeEvery { probe = max(probe, policy.spinSeconds()) }
        #expect(probe >= 45e-6)
    }

    @Test func socketWait_withoutSpinningNeitherLoopsNorAsksThePolicy() throws {
        let (a, b) = try FD.socketPair()
        let peer = FileDescriptor(adopting: b)
        let channel = IncomingChannel(fd: a, source: 1, pool: BufferPool())
        let policy = SocketSpin()
        policy.record(caught: false)
        // A crowded machine: no tight loop, and the policy's probe count does not move.
        for _ in 0..<SocketSpin.probeEvery {
            let wait = try #require(SocketWait([channel], policy: policy, spinning: false))
            #expect(wait.spinSeconds == 0)
        }
        for _ in 1..<SocketSpin.probeEvery { #expect(policy.spinSeconds() == 0) }
        #expect(policy.spinSeconds() == SocketSpin.maxSeconds)
        let spinning = try #require(SocketWait([channel], policy: policy, spinning: true))
        #expect(spinning.spinSeconds == 0)
        withExtendedLifetime(peer) {}
    }

    @Test func waitingFirst_whileFirstReadsFindNothing_withAReadFirstNowAndThen() {
        let policy = SocketSpin()
        #expect(!policy.waitsFirst())
        policy.recordFirstRead(found: false)
        for _ in 1..<SocketSpin.probeEvery { #expect(policy.waitsFirst()) }
        // A receive that reads first, to see whether messages wait already (a stream)...
        #expect(!policy.waitsFirst())
        #expect(policy.waitsFirst())
        // ...and one that found bytes at once ends the waiting first.
        policy.recordFirstRead(found: true)
        #expect(!policy.waitsFirst())
    }

    @Test func socketWait_learnsToWaitFirstOnlyWithoutATightLoop() throws {
        let (a, b) = try FD.socketPair()
        let peer = FileDescriptor(adopting: b)
        let channel = IncomingChannel(fd: a, source: 1, pool: BufferPool())
        // A receive that spins teaches nothing about its first read: the spin is the wait.
        let policy = SocketSpin()
        let spinning = try #require(SocketWait([channel], policy: policy, spinning: true))
        #expect(spinning.spinSeconds > 0 && !spinning.waitsFirst)
        spinning.firstRead(found: false)
        #expect(!policy.waitsFirst())
        // Without one (a crowded machine), a first read that found nothing makes the next wait first.
        let sleeping = try #require(SocketWait([channel], policy: policy, spinning: false))
        #expect(!sleeping.waitsFirst)
        sleeping.firstRead(found: false)
        let next = try #require(SocketWait([channel], policy: policy, spinning: false))
        #expect(next.waitsFirst)
        // A receive that waited first does not teach either (its read came after the wait).
        next.firstRead(found: true)
        #expect(try #require(SocketWait([channel], policy: policy, spinning: false)).waitsFirst)
        withExtendedLifetime(peer) {}
    }
}
