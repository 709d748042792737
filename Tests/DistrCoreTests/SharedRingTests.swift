import Testing

@testable import DistrCore

/// A zeroed ring segment in this process's own memory (no second process needed).
final class TestRing {
    let base: UnsafeMutableRawPointer
    let capacity: Int

    init(capacity: Int = SharedRing.minimumCapacity) {
        self.capacity = capacity
        let size = SharedRing.segmentSize(capacity: capacity)
        base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    }

    deinit { base.deallocate() }

    var memory: RingMemory { RingMemory(base: base, capacity: capacity) }
    func writer(peer: Int = 1) -> RingWriter { RingWriter(memory: memory, peer: peer) }
    func reader(peer: Int = 0) -> RingReader { RingReader(memory: memory, peer: peer) }

    /// What a hostile peer does: writes any value into an index word.
    func poke(_ offset: Int, _ value: UInt64) { (base + offset).storeBytes(of: value, as: UInt64.self) }
}

/// A node (rank 0) with a ring connection from `peer`, as the worker sets one up: the sending
/// side's socket end and its mapping of the 64 KiB ring (`close` closes both).
struct RingConnection {
    let node: Node
    let theirs: Int32
    let segment: Int32
    let sending: RingMemory

    init(count: Int, from peer: Int) throws {
        node = try PeerInputTests.node(id: 0, count: count)
        let (theirs, mine) = try FD.socketPair()
        self.theirs = theirs
        segment = try SharedMemory.create(size: SharedRing.segmentSize(capacity: 1 << 16))
        sending = try Node.mapRing(segment, peer: 0)
        node.handleAgentMessage(.incomingShared(from: peer), fds: [mine, try FD.duplicate(segment)])
    }

    func close() {
        FD.close(theirs)
        FD.close(segment)
    }
}

extension RingWriter {
    mutating func write(_ bytes: [UInt8]) throws -> (count: Int, wake: Bool) {
        try bytes.withUnsafeBytes { try write($0, UnsafeRawBufferPointer(start: nil, count: 0)) }
    }
}

extension RingReader {
    mutating func read(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try read(into: $0).count }
        return Array(out.prefix(n))
    }
}

@Suite(.hangGuard) struct SharedRingTests {
    // MARK: Pure index arithmetic

    @Test func unread_isTheDistanceAndRejectsImpossiblePairs() {
        #expect(SharedRing.unread(head: 0, tail: 0, capacity: 4096) == 0)
        #expect(SharedRing.unread(head: 4096, tail: 0, capacity: 4096) == 4096)
        #expect(SharedRing.unread(head: 4097, tail: 0, capacity: 4096) == nil)
        // The tail ahead of the head is impossible, however little.
        #expect(SharedRing.unread(head: 5, tail: 6, capacity: 4096) == nil)
        // Indices wrap around 2^64 without harm.
        #expect(SharedRing.unread(head: 10, tail: UInt64.max - 9, capacity: 4096) == 20)
        #expect(SharedRing.unread(head: UInt64.max, tail: 0, capacity: 4096) == nil)
    }

    @Test func spans_splitAtTheEndOfTheDataArea() {
        #expect(SharedRing.spans(at: 0, count: 100, capacity: 4096) == (0..<100, 0..<0))
        #expect(SharedRing.spans(at: 4000, count: 200, capacity: 4096) == (4000..<4096, 0..<104))
        #expect(SharedRing.spans(at: 4096 * 7 + 5, count: 4096, capacity: 4096) == (5..<4096, 0..<5))
        #expect(SharedRing.spans(at: UInt64.max, count: 2, capacity: 4096) == (4095..<4096, 0..<1))
    }

    @Test func capacity_comesFromTheSegmentSizeAndMustBeAPowerOfTwo() {
        #expect(SharedRing.capacity(segmentSize: SharedRing.segmentSize()) == SharedRing.defaultCapacity)
        #expect(SharedRing.capacity(segmentSize: SharedRing.headerSize + 4096) == 4096)
        for bad in [0, SharedRing.headerSize, SharedRing.headerSize + 4095, SharedRing.headerSize + 6000, SharedRing.headerSize + (1 << 29)] {
            #expect(SharedRing.capacity(segmentSize: bad) == nil, "\(bad)")
        }
    }

    // MARK: Writer and reader over one segment

    @Test func bytesComeOutInOrderAcrossManyWrapArounds() throws {
        let ring = TestRing()
        var writer = ring.writer()
        var reader = ring.reader()
        var generator = SplitMix(seed: 9)
        var sent: [UInt8] = []
        var received: [UInt8] = []
        var next: UInt8 = 0
        for round in 0..<2000 {
            let size = Int.random(in: 0...3000, using: &generator)
            var chunk: [UInt8] = []
            for _ in 0..<size {
                chunk.append(next)
                next &+= 7
            }
            // Header and body travel as two pieces, like a frame.
            let split = size / 3
            let taken = try chunk.withUnsafeBytes { raw in
                try writer.write(UnsafeRawBufferPointer(rebasing: raw[0..<split]), UnsafeRawBufferPointer(rebasing: raw[split...])).count
            }
            sent += chunk.prefix(taken)
            next = sent.last.map { $0 &+ 7 } ?? 0
            received += try reader.read(Int.random(in: 1...4096, using: &generator))
            if round % 50 == 0 { received += try reader.read(ring.capacity) }
        }
        received += try reader.read(ring.capacity)
        #expect(received == sent)
        #expect(writer.head == reader.tail)
        #expect(writer.head > UInt64(ring.capacity * 100))
    }

    @Test func aFullRingTakesNothingMoreUntilTheReaderFreesRoom() throws {
        let ring = TestRing()
        var writer = ring.writer()
        var reader = ring.reader()
        #expect(try writer.write([UInt8](repeating: 1, count: ring.capacity + 10)).count == ring.capacity)
        #expect(try writer.write([2]).count == 0)
        #expect(try reader.read(10) == [UInt8](repeating: 1, count: 10))
        #expect(try writer.write([UInt8](repeating: 3, count: 20)).count == 10)
        #expect(try reader.read(ring.capacity).count == ring.capacity)
        #expect(try reader.read(1) == [])
    }

    @Test func sleepingFlags_wakeEachSideExactlyOnce() throws {
        let ring = TestRing()
        var writer = ring.writer()
        var reader = ring.reader()
        // The reader is about to sleep on an empty ring: the next write must wake it, once.
        #expect(try reader.prepareToSleep() == false)
        #expect(try writer.write([1, 2, 3]).wake == true)
        #expect(try writer.write([4]).wake == false)
        // Bytes already there: the reader must not sleep.
        #expect(try reader.prepareToSleep() == true)
        reader.stayAwake()
        #expect(try writer.write([5]).wake == false)
        _ = try reader.read(ring.capacity)
        // The writer sleeps on a full ring: the next read wakes it.
        _ = try writer.write([UInt8](repeating: 0, count: ring.capacity))
        #expect(try writer.prepareToSleep() == false)
        #expect(try reader.read(1).count == 1)
        // That read woke it; the next does not.
        #expect(try writer.prepareToSleep() == true)
    }

    @Test func aWriteWakesTheReceiverSleepingOnTheRingOnce() throws {
        let ring = TestRing()
        var writer = ring.writer()
        // What `sleepUntilWritten` sets before it sleeps: the write claims it (and wakes the thread).
        SharedWord.store32(ring.base, SharedRing.receiverWaitingOffset, 1)
        _ = try writer.write([1])
        #expect(SharedWord.load32(ring.base, SharedRing.receiverWaitingOffset) == 0)
        // Nobody sleeps: the flag stays clear, and a write does not set it.
        _ = try writer.write([2])
        #expect(SharedWord.load32(ring.base, SharedRing.receiverWaitingOffset) == 0)
    }

    @Test func sleepUntilWritten_returnsAtOnceWhenBytesAreThere() throws {
        let ring = TestRing()
        var writer = ring.writer()
        _ = try writer.write([1, 2])
        // Nothing read yet: the published tail is behind the head, so no sleep (an hour otherwise).
        ring.memory.sleepUntilWritten(timeout: 3600)
        #expect(SharedWord.load32(ring.base, SharedRing.receiverWaitingOffset) == 0)
    }

    @Test func sleepUntilWritten_returnsAtOnceWhenTheMessageWasDeliveredMeanwhile() throws {
        let ring = TestRing()
        // An empty ring, but the progress thread took the bytes and delivered the message before
        // the flag went up: no sleep (an hour otherwise; the suite's time limit fails the test).
        var asked = false
        ring.memory.sleepUntilWritten(timeout: 3600) {
            asked = true
            return true
        }
        #expect(asked)
        #expect(SharedWord.load32(ring.base, SharedRing.receiverWaitingOffset) == 0)
    }

    @Test func sleepUntilWritten_endsWhenTheReadersOwnProgressThreadWakesIt() async throws {
        let fd = try SharedMemory.create(size: SharedRing.segmentSize(capacity: 1 << 16))
        defer { FD.close(fd) }
        let receiving = try Node.mapRing(fd, peer: 0)
        async let slept: Void = onDedicatedThread(name: "sleeper") { receiving.sleepUntilWritten(timeout: 3600) }
        while SharedWord.load32(receiving.base, SharedRing.receiverWaitingOffset) == 0 { await Task.yield() }
        // What a drain by the progress thread does after delivering: the sleeper looks again.
        receiving.wakeWaitingReceiver()
        try await slept
        #expect(!receiving.mayHaveUnread)
    }

    @Test func sleepUntilWritten_endsWhenTheSenderWrites() async throws {
        let fd = try SharedMemory.create(size: SharedRing.segmentSize(capacity: 1 << 16))
        defer { FD.close(fd) }
        // Two mappings of one segment, as two ranks have.
        var writer = RingWriter(memory: try Node.mapRing(fd, peer: 1), peer: 1)
        let receiving = try Node.mapRing(fd, peer: 0)
        async let slept: Void = onDedicatedThread(name: "sleeper") { receiving.sleepUntilWritten(timeout: 3600) }
        // Wait (spinning, no sleep) until the thread says it is going to sleep, then write.
        while SharedWord.load32(receiving.base, SharedRing.receiverWaitingOffset) == 0 { await Task.yield() }
        _ = try writer.write([7])
        // Without the wake the thread sleeps the hour, and the suite's time limit fails the test.
        try await slept
        #expect(receiving.mayHaveUnread)
    }

    // MARK: A hostile peer

    @Test func aHeadBeyondTheCapacityIsAnErrorNamingTheWriter() throws {
        let ring = TestRing()
        var reader = ring.reader(peer: 5)
        ring.poke(SharedRing.headOffset, UInt64(ring.capacity) + 1)
        #expect(throws: NodeError.self) { _ = try reader.read(16) }
        do {
            _ = try reader.read(16)
        } catch {
            #expect("\(error)".hasPrefix("the shared-memory ring with rank 5 is unusable (it reports having written to byte 4097 with 0 read"))
        }
        #expect(throws: NodeError.self) { _ = try reader.prepareToSleep() }
        #expect(throws: NodeError.self) { _ = try reader.hasUnread() }
    }

    @Test func aHeadMovedBackwardsIsAnError() throws {
        let ring = TestRing()
        var writer = ring.writer()
        var reader = ring.reader(peer: 2)
        _ = try writer.write([UInt8](repeating: 9, count: 100))
        #expect(try reader.read(100).count == 100)
        ring.poke(SharedRing.headOffset, 50)
        #expect(throws: NodeError.corruptRing(rank: 2, detail: "it reports having written to byte 50 with 100 read, in a ring of 4096")) {
            _ = try reader.read(1)
        }
    }

    @Test func aTailAheadOfTheHeadIsAnErrorForTheWriter() throws {
        let ring = TestRing()
        var writer = ring.writer(peer: 3)
        _ = try writer.write([1, 2, 3])
        ring.poke(SharedRing.tailOffset, 4)
        // A write that needs more room than the writer last saw free reads the tail, and checks it.
        #expect(throws: NodeError.corruptRing(rank: 3, detail: "it reports having read to byte 4 of the 3 written")) {
            _ = try writer.write([UInt8](repeating: 4, count: 4094))
        }
        // Far behind the head (modulo 2^64) is as impossible as ahead of it.
        ring.poke(SharedRing.tailOffset, 3 &- (1 << 40))
        #expect(throws: NodeError.self) { _ = try writer.prepareToSleep() }
    }

    @Test func aWriteWithinTheRoomLastSeenDoesNotReadTheTail() throws {
        let ring = TestRing()
        var writer = ring.writer()
        var reader = ring.reader()
        _ = try writer.write([UInt8](repeating: 1, count: 4000))
        #expect(try reader.read(4000).count == 4000)
        // The writer last saw 96 bytes free: a write that fits them takes no look at the tail
        // (its cache line belongs to the reader's core), so even an impossible one goes unseen.
        ring.poke(SharedRing.tailOffset, 1 << 40)
        #expect(try writer.write([UInt8](repeating: 2, count: 96)).count == 96)
        // More than that reads it, and finds it impossible.
        #expect(throws: NodeError.self) { _ = try writer.write([3]) }
    }

    @Test func randomIndexWritesNeverCrashOrReadOutOfBounds() throws {
        var generator = SplitMix(seed: 4)
        for _ in 0..<3000 {
            let ring = TestRing()
            var writer = ring.writer()
            var reader = ring.reader()
            _ = try writer.write([UInt8](repeating: 1, count: Int.random(in: 0...5000, using: &generator)))
            _ = try reader.read(Int.random(in: 0...5000, using: &generator))
            ring.poke(SharedRing.headOffset, UInt64.random(in: 0...UInt64.max, using: &generator) >> UInt64.random(in: 0...63, using: &generator))
            ring.poke(SharedRing.tailOffset, UInt64.random(in: 0...UInt64.max, using: &generator) >> UInt64.random(in: 0...63, using: &generator))
            _ = try? reader.read(8192)  // Either a count within the capacity or the corrupt-ring error.
            _ = try? writer.write([UInt8](repeating: 2, count: 8192))  // Likewise.
        }
    }

    @Test func fuzzTarget_runsRandomScriptsWithoutFindings() {
        // The libFuzzer target's own checks (counts in range, order kept while untouched) over
        // random scripts; a finding stops the process.
        var generator = SplitMix(seed: 12)
        for round in 0..<500 {
            var script: [UInt8] = []
            for _ in 0..<Int.random(in: 1...40, using: &generator) {
                // Mostly reads and writes; an index or flag overwrite now and then.
                let operation = round % 3 == 0 ? UInt8.random(in: 0...255, using: &generator) : UInt8.random(in: 0...1, using: &generator)
                script.append(operation)
                let operandBytes = [2, 2, 8, 8, 4, 4, 4, 0][Int(operation % 8)]
                for _ in 0..<operandBytes { script.append(UInt8.random(in: 0...0x1F, using: &generator)) }
            }
            FuzzTarget.sharedRing(script)
        }
        for seed in FuzzTarget.seeds() where seed.target == "shared-ring" { FuzzTarget.sharedRing(seed.bytes) }
    }

    // MARK: Segments and channels

    @Test func aMemfdSegmentMappedTwiceCarriesBytesBetweenMappings() throws {
        let fd = try SharedMemory.create(size: SharedRing.segmentSize(capacity: 1 << 16))
        defer { FD.close(fd) }
        var writer = RingWriter(memory: try Node.mapRing(fd, peer: 1), peer: 1)
        var reader = RingReader(memory: try Node.mapRing(fd, peer: 0), peer: 0)
        _ = try writer.write(Array("over shared memory".utf8))
        #expect(String(decoding: try reader.read(100), as: UTF8.self) == "over shared memory")
    }

    @Test func aSegmentOfTheWrongSizeIsRefusedNamingTheRank() throws {
        let fd = try SharedMemory.create(size: SharedRing.headerSize + 6000)
        defer { FD.close(fd) }
        #expect(throws: NodeError.corruptRing(rank: 4, detail: "a segment of 10096 bytes is not a ring")) { try Node.mapRing(fd, peer: 4) }
        let (one, two) = try FD.socketPair()
        defer {
            FD.close(one)
            FD.close(two)
        }
        #expect(throws: NodeError.self) { try Node.mapRing(one, peer: 4) }
    }

    @Test func ringChannel_deliversFramesThenTheEndOfStream() async throws {
        let node = try PeerInputTests.node(id: 0, count: 2)
        let (theirs, mine) = try FD.socketPair()
        FD.setNonblocking(theirs)
        let segment = try SharedMemory.create(size: SharedRing.segmentSize(capacity: 1 << 16))
        defer { FD.close(segment) }
        var writer = RingWriter(memory: try Node.mapRing(segment, peer: 0), peer: 0)
        node.handleAgentMessage(.incomingShared(from: 1), fds: [mine, try FD.duplicate(segment)])
        // Larger than the ring: it goes in pieces as the receiver makes room.
        let big = [UInt8](repeating: 6, count: 200_000)
        let waiting = Task { try await node.recvBytes(from: 1) }
        var frame = RankFrame(encoding: .bytes, tag: 0, length: big.count).header() + big
        frame += RankFrame(encoding: .codable, tag: 3, length: 8).header() + (try BinaryEncoder().encode(42))
        var offset = 0
        while offset < frame.count {
            let (count, wake) = try frame.withUnsafeBytes { raw in
                try writer.write(UnsafeRawBufferPointer(rebasing: raw[offset...]), UnsafeRawBufferPointer(start: nil, count: 0))
            }
            if wake { Doorbell.ring(theirs) }
            offset += count
            if count == 0 {
                // Full: wait for the receiver's doorbell like a sending rank does.
                if try !writer.prepareToSleep() { _ = try FD.waitReadable([theirs]) }
                _ = Doorbell.drain(theirs)
            }
        }
        #expect(try await waiting.value.value == big)
        #expect(try await node.recv(Int.self, from: 1, tag: 3) == 42)
        // The sender goes: what it wrote was read, so receives now fail naming it.
        FD.close(theirs)
        node.mailbox.peerExited(1, status: 0)
        await #expect(throws: NodeError.peerExited(rank: 1, status: 0)) { try await node.recv(Int.self, from: 1) }
    }

    @Test func ringChannel_corruptHeadFailsReceivesFromThatRank() async throws {
        let connection = try RingConnection(count: 3, from: 2)
        let node = connection.node
        defer { connection.close() }
        let waiting = Task { try await node.recv(Int.self, from: 2) }
        SharedWord.storeRelease(connection.sending.base, SharedRing.headOffset, 1 << 40)
        Doorbell.ring(connection.theirs)
        let expected = NodeError.corruptRing(rank: 2, detail: "it reports having written to byte 1099511627776 with 0 read, in a ring of 65536")
        await #expect(throws: expected) { try await waiting.value }
        await #expect(throws: expected) { try await node.recv(Int.self, from: 2) }
    }

    @Test func ringChannel_aReceiveThatParksAsksForTheDoorbellItNeeds() async throws {
        let connection = try RingConnection(count: 2, from: 1)
        let node = connection.node
        defer { connection.close() }
        var writer = RingWriter(memory: connection.sending, peer: 0)
        for round in 0..<10 {
            // The receive spins, sleeps on the ring, then parks; only then does the sender write,
            // ringing the doorbell only if asked (a receive that spun leaves the ring quiet).
            let waiting = Task { try await node.recv(Int.self, from: 1, tag: round) }
            // Parked (registered in the mailbox), and then the request made: the receive asks
            // for the doorbell just after it registers, and a write between the two is taken by
            // the receive itself (it looks at the ring once more), without a doorbell.
            while node.mailbox.waiterCount == 0 || SharedWord.load32(connection.sending.base, SharedRing.receiverSleepingOffset) == 0 {
                await Task.yield()
            }
            let frame = RankFrame(encoding: .codable, tag: round, length: 8).header() + (try BinaryEncoder().encode(round))
            let (count, wake) = try frame.withUnsafeBytes { try writer.write($0, UnsafeRawBufferPointer(start: nil, count: 0)) }
            #expect(count == frame.count)
            // Without the request the message would sit in the ring, unannounced.
            #expect(wake, "round \(round)")
            Doorbell.ring(connection.theirs)
            #expect(try await waiting.value == round)
        }
    }

    @Test func ringLink_aSendLargerThanTheRingCompletesWithNoReceiveWaiting() async throws {
        let connection = try RingConnection(count: 2, from: 1)
        let node = connection.node
        defer { FD.close(connection.segment) }
        // As after a receive that found its message by spinning: the receiver asks for no doorbell.
        SharedWord.store32(connection.sending.base, SharedRing.receiverSleepingOffset, 0)
        // The link owns (and closes) the sending socket.
        let link = OutgoingLink(fd: connection.theirs, rank: 0, ring: RingWriter(memory: connection.sending, peer: 0), spinBudget: 0)
        let big = [UInt8](repeating: 4, count: 300_000)
        // Buffered: the send completes though nobody receives (the full ring rings the doorbell
        // itself, and the receiver's progress thread empties it into the mailbox).
        try await link.send(header: RankFrame(encoding: .bytes, tag: 0, length: big.count).header(), body: .bytes(big))
        #expect(try await node.recvBytes(from: 1).value == big)
    }

    // MARK: Choosing the transport and the spin

    @Test func transport_comesFromTheEnvironment() throws {
        #expect(try Node.usesSharedMemory(nil) == true)
        #expect(try Node.usesSharedMemory("shm") == true)
        #expect(try Node.usesSharedMemory("socket") == false)
        #expect(throws: NodeError.badArgument("DISTR_TRANSPORT=tcp is not a transport (shm, the default, or socket)")) {
            try Node.usesSharedMemory("tcp")
        }
    }

    @Test func spinPolicy_ranksOutnumberingCoresSpinOnlyOverRingsAndHandTheCoreOver() {
        var policy = SpinPolicy(budget: 100e-6, localRanks: 3, cores: 2)
        #expect(policy.yields && policy.sendBudget == 0)
        // Over sockets a spin would keep the core the sender may need: no spin, as before.
        let sockets = policy.plan(canSleep: false, onlyRings: false, now: 0, runnable: { 1 })
        #expect(sockets.spin == 0 && sockets.sleep == 0)
        // Over rings it spins (yielding at every turn), then sleeps on the ring.
        let onRing = policy.plan(canSleep: true, onlyRings: true, now: 0, runnable: { 1 })
        #expect(onRing.spin == 100e-6 && onRing.sleep == SpinPolicy.sleepLimit)
        // Three runnable threads on two cores are this job's three ranks spinning, not a load:
        // only more than the ranks, at two looks in a row, stop the spin.
        // (Looks two intervals apart: one apart can fall a rounding short of the interval.)
        let interval = SpinPolicy.lookInterval
        var looks = 0
        for step in 1...3 {
            let plan = policy.plan(
                canSleep: false, now: interval * Double(2 * step),
                runnable: {
                    looks += 1
                    return 3
                })
            #expect(plan.spin > 0)
        }
        #expect(looks == 3)
        _ = policy.plan(canSleep: false, now: interval * 8, runnable: { 4 })
        #expect(policy.plan(canSleep: false, now: interval * 10, runnable: { 4 }).spin == 0)
        // Ranks that fit the cores spin without yielding, and sends spin too.
        var fits = SpinPolicy(budget: 100e-6, localRanks: 2, cores: 2)
        #expect(!fits.yields && fits.sendBudget == 100e-6)
        let fitsPlan = fits.plan(canSleep: true, onlyRings: false, runnable: { 1 })
        #expect(fitsPlan.spin == 100e-6 && fitsPlan.sleep == SpinPolicy.sleepLimit)
        // DISTR_SPIN_USEC=0: every receive parks at once.
        var off = SpinPolicy(budget: 0, localRanks: 1, cores: 8)
        let offPlan = off.plan(canSleep: true, runnable: { 1 })
        #expect(offPlan.spin == 0 && offPlan.sleep == 0)
        var offCrowded = SpinPolicy(budget: 0, localRanks: 4, cores: 2)
        #expect(offCrowded.plan(canSleep: true, runnable: { 1 }).spin == 0 && offCrowded.sendBudget == 0)
    }

    @Test func spinPolicy_doesNotSpinWhileTheMachineHasMoreRunnableThreadsThanCores() {
        var policy = SpinPolicy(budget: 100e-6, localRanks: 2, cores: 2)
        // One look that sees more runnable threads than cores may have caught a passing thread.
        let once = policy.plan(canSleep: true, now: 0, runnable: { 5 })
        #expect(once.spin > 0)
        let interval = SpinPolicy.lookInterval
        let loaded = policy.plan(canSleep: true, now: interval, runnable: { 3 })
        #expect(loaded.spin == 0 && loaded.sleep > 0)
        // Counted again only after `lookInterval`.
        var looks = 0
        let soon = policy.plan(
            canSleep: true, now: interval * 1.5,
            runnable: {
                looks += 1
                return 1
            })
        #expect(soon.spin == 0 && looks == 0)
        // One look that sees no more than the cores ends it.
        let later = policy.plan(
            canSleep: true, now: interval * 2,
            runnable: {
                looks += 1
                return 2
            })
        #expect(later.spin > 0 && looks == 1)
        // A look over, one under, one over: never two in a row, so spinning goes on.
        for (index, count) in [3, 2, 3].enumerated() {
            #expect(policy.plan(canSleep: false, now: interval * Double(3 + index), runnable: { count }).spin > 0)
        }
        // This machine's count includes the thread that reads it.
        #expect((SystemFacts.runnableThreads ?? 0) >= 1)
    }

    @Test func spinPolicy_backsOffAfterSpinsThatDidNotPay() {
        var policy = SpinPolicy(budget: 100e-6, localRanks: 1, cores: 2)
        var spins: [Bool] = []
        func receive(_ outcome: SpinPolicy.Outcome) {
            let plan = policy.plan(canSleep: false, runnable: { 1 })
            spins.append(plan.spin > 0)
            policy.record(outcome, planned: plan)
        }
        for _ in 0..<SpinPolicy.missesBeforeBackoff - 1 { receive(.missed) }
        // A spin that pays resets the count.
        receive(.spun)
        for _ in 0..<SpinPolicy.missesBeforeBackoff { receive(.missed) }
        #expect(spins == [Bool](repeating: true, count: 2 * SpinPolicy.missesBeforeBackoff))
        spins = []
        for _ in 0..<SpinPolicy.backoffReceives { receive(.missed) }
        #expect(spins == [Bool](repeating: false, count: SpinPolicy.backoffReceives))
        let probe = policy.plan(canSleep: false, runnable: { 1 })
        #expect(probe.spin > 0)
    }

    @Test func spinPolicy_messagesThatComeDuringTheSleepStopTheSpinButNotTheSleep() {
        // A loaded machine: the answer comes only after the spin, while the receive sleeps.
        var policy = SpinPolicy(budget: 100e-6, localRanks: 2, cores: 2)
        var plans: [(spin: Double, sleep: Double)] = []
        for _ in 0..<SpinPolicy.missesBeforeBackoff + 4 {
            let plan = policy.plan(canSleep: true, runnable: { 1 })
            plans.append(plan)
            policy.record(.slept, planned: plan)
        }
        #expect(plans.prefix(SpinPolicy.missesBeforeBackoff).allSatisfy { $0.spin > 0 })
        #expect(plans.dropFirst(SpinPolicy.missesBeforeBackoff).allSatisfy { $0.spin == 0 && $0.sleep > 0 })
        // Sleeps that do not pay either (a sender busy computing): those receives park at once.
        for _ in 0..<SpinPolicy.missesBeforeBackoff {
            let plan = policy.plan(canSleep: true, runnable: { 1 })
            policy.record(.missed, planned: plan)
        }
        let parks = policy.plan(canSleep: true, runnable: { 1 })
        #expect(parks.sleep == 0)
    }
}
