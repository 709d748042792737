import Testing

@testable import DistrCore

/// What a rank does with input from a peer that lies or is broken: a clear error naming the
/// peer, never a crash, a hang or a huge allocation.
@Suite(.hangGuard) struct PeerInputTests {
    init() { Signals.ignorePipe() }

    final class Chain: Codable {
        var next: Chain?
        init(next: Chain?) { self.next = next }
    }

    /// `levels` nested chains, as the binary coder writes them: a presence byte per link.
    static func chainBytes(levels: Int) -> [UInt8] { [UInt8](repeating: 1, count: levels - 1) + [0] }

    /// A node of `count` ranks with no worker behind it: tests hand it messages and connections.
    static func node(id: Int, count: Int) throws -> Node {
        try Node(id: id, count: count, jobID: "test", jobKey: [], workerIndex: 0, placements: [], agentFD: -1, maxMessageBytes: 1 << 20)
    }

    static func envelope<T: Encodable>(_ value: T, from source: Int, tag: Int) throws -> Envelope {
        if let array = value as? any RawNumericArray {
            var bytes: [UInt8] = []
            array.appendRawBytes(to: &bytes)
            return Envelope(
                source: source, frame: RankFrame(encoding: .numeric, element: type(of: array).elementCode, tag: tag, length: bytes.count),
                payload: bytes)
        }
        let bytes = try BinaryEncoder().encode(value)
        return Envelope(
            source: source, frame: RankFrame(encoding: .codable, fingerprint: RankFrame.fingerprint(of: T.self), tag: tag, length: bytes.count),
            payload: bytes)
    }

    /// Gives `node` a sending link to `rank` whose other end nobody reads (small sends fit its buffer).
    static func link(_ node: Node, to rank: Int) throws -> Int32 {
        let (mine, theirs) = try FD.socketPair()
        node.links.withLock { $0[rank] = .ready(OutgoingLink(fd: mine, rank: rank)) }
        return theirs
    }

    // MARK: Binary Codable

    @Test func binaryDecoder_refusesRecursiveValueNestedDeeperThanTheLimit() throws {
        // 16 KB that would nest 16384 levels deep.
        #expect(throws: BinaryDecoder.NestingTooDeep(limit: 256)) {
            try BinaryDecoder().decode(Chain.self, from: Self.chainBytes(levels: 16384))
        }
        #expect(throws: BinaryDecoder.NestingTooDeep(limit: 256)) { try BinaryDecoder().decode(Chain.self, from: Self.chainBytes(levels: 257)) }
        let deepest = try BinaryDecoder().decode(Chain.self, from: Self.chainBytes(levels: 256))
        var levels = 1
        var link = deepest
        while let next = link.next {
            levels += 1
            link = next
        }
        #expect(levels == 256)
        #expect(throws: BinaryDecoder.NestingTooDeep(limit: 8)) {
            try BinaryDecoder(maxDepth: 8).decode(Chain.self, from: Self.chainBytes(levels: 9))
        }
    }

    @Test func binaryDecoder_refusesDeepIndirectEnum() throws {
        var tree = PeerInputFuzzing.Tree.leaf(1)
        for level in 0..<300 { tree = level % 2 == 0 ? .maybe(tree) : .list([tree]) }
        let bytes = try BinaryEncoder().encode(tree)
        #expect(throws: BinaryDecoder.NestingTooDeep(limit: 256)) { try BinaryDecoder().decode(PeerInputFuzzing.Tree.self, from: bytes) }
        #expect(try BinaryDecoder(maxDepth: 1000).decode(PeerInputFuzzing.Tree.self, from: bytes) == tree)
    }

    @Test func nodeDecode_namesTheSenderOfATooDeepMessage() throws {
        let payload = Self.chainBytes(levels: 16384)
        let envelope = Envelope(source: 2, frame: RankFrame(encoding: .codable, tag: 7, length: payload.count), payload: payload)
        let error = NodeError.nestedTooDeep(source: 2, tag: 7, limit: 256)
        #expect(throws: error) { try Node.decode(Chain.self, envelope) }
        #expect("\(error)" == "the message from rank 2 with tag 7 nests deeper than 256 levels")
    }

    @Test func binaryDecoder_checksEveryCountAgainstTheBytesLeftBeforeAllocating() {
        let huge: [UInt8] = [0xff, 0xff, 0xff, 0xff] + [UInt8](repeating: 0, count: 10)
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode([Int].self, from: huge) }
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode([String].self, from: huge) }
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode([[Int]].self, from: huge) }
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode([String: Int].self, from: huge) }
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode(String.self, from: huge) }
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode(Set<Int>.self, from: huge) }
    }

    @Test func fuzzEntryPoint_decodesCodableFromArbitraryBytesWithoutCrashing() throws {
        let record = PeerInputFuzzing.Record(
            name: "r", values: [1, 2], weights: [0.5], inner: .init(flag: true, small: -1, words: ["a", "bc"]), table: ["k": 3])
        let tree = PeerInputFuzzing.Tree.node(.leaf(1), .list([.maybe(nil), .maybe(.leaf(2))]))
        let samples = [try BinaryEncoder().encode(record), try BinaryEncoder().encode(tree), try BinaryEncoder().encode("text")]
        #expect(PeerInputFuzzing.decodeCodable(samples[0]) >= 1)
        var generator = SplitMix(seed: 2)
        for round in 0..<3000 {
            var bytes = samples[round % samples.count]
            for _ in 0..<(round % 4 + 1) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            if round % 5 == 0 { bytes = (0..<(round % 64)).map { _ in UInt8.random(in: 0...255, using: &generator) } }
            _ = PeerInputFuzzing.decodeCodable(bytes)
        }
    }

    // MARK: Frames over a socket

    @Test func hostileHeader_failsReceivesFromThatRankWithoutCrashing() async throws {
        let node = try Self.node(id: 0, count: 4)
        let (theirs, mine) = try FD.socketPair()
        defer { FD.close(theirs) }
        node.handleAgentMessage(.incoming(from: 3), fd: mine)
        // A good message first: it is still delivered.
        let good = RankFrame(encoding: .codable, tag: 0, length: 8)
        try FD.writeAll(theirs, good.header() + (try BinaryEncoder().encode(42)))
        #expect(try await node.recv(Int.self, from: 3) == 42)
        let waiting = Task { try await node.recv(Int.self, from: 3) }
        try FD.writeAll(theirs, header(encoding: 2, element: 12, length: 1 << 60))
        let error = NodeError.messageTooLarge(rank: 3, size: 1 << 60, limit: 1 << 20)
        await #expect(throws: error) { try await waiting.value }
        await #expect(throws: error) { try await node.recv(Int.self, from: 3) }
        #expect(
            "\(error)"
                == "rank 3 sent a message of 1152921504606846976 bytes, over the limit of 1048576 (DISTR_MAX_MESSAGE_BYTES); the connection from rank 3 was closed"
        )
        // The connection is closed: the sender's writes now fail.
        var buffer = [UInt8](repeating: 0, count: 1)
        #expect(try FD.read(theirs, into: &buffer) == 0)
    }

    @Test func malformedHeader_failsAnySourceReceiveWhenNoOtherRankIsLeft() async throws {
        let node = try Self.node(id: 0, count: 2)
        let (theirs, mine) = try FD.socketPair()
        defer { FD.close(theirs) }
        node.handleAgentMessage(.incoming(from: 1), fd: mine)
        let waiting = Task { try await node.recv(Int.self) }
        try FD.writeAll(theirs, header(kind: 9, length: 0))
        await #expect(throws: NodeError.badFrame(rank: 1, detail: "unknown frame kind 9")) { try await waiting.value }
    }

    @Test func messageLimit_comesFromTheEnvironmentAndMustBeAByteCount() throws {
        #expect(try Node.messageLimit(nil) == 1 << 30)
        #expect(try Node.messageLimit("4096") == 4096)
        for bad in ["0", "-1", "1G", "", "99999999999999999999"] {
            #expect(throws: NodeError.self) { try Node.messageLimit(bad) }
        }
    }

    // MARK: Collectives

    @Test func gather_rejectsABlockOfTheWrongSizeNamingTheSender() async throws {
        // Root 0 of 4 receives rank 1's subtree (1 value), then rank 2's (ranks 2 and 3).
        for (counts, liar) in [([1, 3], 2), ([0, 2], 1), ([1, 1], 2), ([5, 2], 1)] {
            let node = try Self.node(id: 0, count: 4)
            node.mailbox.deliver(try Self.envelope([String](repeating: "x", count: counts[0]), from: 1, tag: -1))
            node.mailbox.deliver(try Self.envelope([String](repeating: "y", count: counts[1]), from: 2, tag: -1))
            let expected = liar == 1 ? 1 : 2
            let error = NodeError.badCollective(
                rank: liar, detail: "sent \(counts[liar - 1]) values to gather where its part of the tree has \(expected) ranks")
            await #expect(throws: error) { try await node.gather("mine") }
        }
        let honest = try Self.node(id: 0, count: 4)
        honest.mailbox.deliver(try Self.envelope(["b"], from: 1, tag: -1))
        honest.mailbox.deliver(try Self.envelope(["c", "d"], from: 2, tag: -1))
        #expect(try await honest.gather("a") == ["a", "b", "c", "d"])
    }

    @Test func scatter_rejectsAPortionOfTheWrongSizeNamingTheSender() async throws {
        // Rank 1 of 4 gets its own value only; rank 2 gets values for ranks 2 and 3.
        for (id, sent, expected) in [(1, 3, 1), (2, 1, 2), (2, 0, 2)] {
            let node = try Self.node(id: id, count: 4)
            node.mailbox.deliver(try Self.envelope([Int](repeating: 7, count: sent).map(String.init), from: 0, tag: -1))
            let error = NodeError.badCollective(
                rank: 0, detail: "sent \(sent) values to scatter where this rank's part of the tree has \(expected) ranks")
            await #expect(throws: error) { _ = try await node.scatter(nil as [String]?) }
        }
    }

    @Test func allGather_rejectsAResultOfTheWrongSizeNamingTheSender() async throws {
        let node = try Self.node(id: 1, count: 2)
        let peer = try Self.link(node, to: 0)
        defer { FD.close(peer) }
        node.mailbox.deliver(try Self.envelope(["a", "b", "c"], from: 0, tag: -2))
        let error = NodeError.badCollective(rank: 0, detail: "passed on 3 values in allGather where the job has 2 ranks")
        await #expect(throws: error) { try await node.allGather("b") }
    }

    @Test func ringAllReduce_rejectsAChunkOfTheWrongSizeNamingTheSender() async throws {
        let node = try Self.node(id: 0, count: 2)
        let peer = try Self.link(node, to: 1)
        defer { FD.close(peer) }
        let values = [Double](repeating: 1, count: 2 * Node.ringThreshold)
        // Chunk 1 should have 4096 elements; rank 1 sends 10, then an all-gather chunk.
        node.mailbox.deliver(try Self.envelope([Double](repeating: 1, count: 10), from: 1, tag: -1))
        node.mailbox.deliver(try Self.envelope([Double](repeating: 2, count: Node.ringThreshold), from: 1, tag: -2))
        let error = NodeError.badCollective(rank: 1, detail: "sent a chunk of 10 elements in allReduce where chunk 1 has 4096")
        await #expect(throws: error) { try await node.allReduce(values, .sum) }
    }

    @Test func ringAllReduce_sendsOwnChunkThenTheCombinedOne_ownOperandFirst() async throws {
        // Rank 0 of 2 with 8193 elements: chunk 0 is elements 0..<4096, chunk 1 is 4096..<8193.
        let node = try Self.node(id: 0, count: 2)
        let peer = try Self.link(node, to: 1)
        defer { FD.close(peer) }
        let half = Node.ringThreshold
        let mine = (0..<2 * half + 1).map { $0 % 2 == 0 ? -0.0 : Double($0) }
        // Rank 1's part of chunk 1 (reduce-scatter, tag -1), then the finished chunk 0 (all-gather, tag -2).
        let theirs = (0..<half + 1).map { $0 % 2 == 0 ? 0.0 : Double(-$0) }
        let finished = [Double](repeating: 7, count: half)
        node.mailbox.deliver(try Self.envelope(theirs, from: 1, tag: -1))
        node.mailbox.deliver(try Self.envelope(finished, from: 1, tag: -2))
        let result = try await node.allReduce(mine, .min)
        // min(own, received) keeps -0.0 where both are zero; min(received, own) would give +0.0.
        let combined = theirs.indices.map { Swift.min(mine[half + $0], theirs[$0]) }
        func same(_ a: [Double]?, _ b: some Collection<Double>) -> Bool { a?.map(\.bitPattern) == b.map(\.bitPattern) }
        let resultIsRight = same(result, finished + combined)
        #expect(resultIsRight, "the result, bit for bit")
        #expect(result[half].sign == .minus)
        // What went to rank 1: this rank's own chunk 0, then the combined chunk 1.
        var decoder = RankFrameDecoder(source: 0)
        var sent: [(tag: Int, values: [Double])] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while sent.count < 2 {
            switch try decoder.next() {
            case .frame(let frame, _, let array): sent.append((frame.tag, array?.value as? [Double] ?? []))
            case .needBytes, .needPayload:
                let n = try FD.read(peer, into: &buffer)
                try #require(n > 0)
                decoder.append(Array(buffer[0..<n]))
            case .goodbye: Issue.record("rank 0 said goodbye")
            case .signal: Issue.record("rank 0 sent a connection signal")
            }
        }
        #expect(sent.map(\.tag) == [-1, -2])
        let sentOwn = same(sent.first?.values, mine[0..<half])
        let sentCombined = same(sent.last?.values, combined)
        #expect(sentOwn, "first send: this rank's chunk 0")
        #expect(sentCombined, "second send: the combined chunk 1")
    }

    // MARK: Single-copy offers

    /// An offer of `bytes` in this process, as `Node.offer(of:)` makes it.
    static func offer(of bytes: UnsafeRawBufferPointer, elementCode: UInt8 = Double.wireCode) -> MemoryOffer {
        MemoryOffer(
            pid: CurrentProcess.id, address: UInt64(UInt(bitPattern: bytes.baseAddress)), byteCount: bytes.count, elementCode: elementCode,
            identity: ProcessMemory.identity.value, identityAddress: ProcessMemory.identity.address)
    }

    /// The first frame rank 0 sent on `fd` (its link to rank 1), read until it is complete.
    static func readFrame(_ fd: Int32) throws -> (RankFrame, [UInt8])? {
        var decoder = RankFrameDecoder(source: 0)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            switch try decoder.next() {
            case .frame(let frame, let payload, _): return (frame, payload)
            case .goodbye, .signal: return nil
            case .needBytes, .needPayload:
                let count = try FD.read(fd, into: &buffer)
                if count == 0 { return nil }
                decoder.append(Array(buffer[..<count]))
            }
        }
    }

    /// Rank 0 of 2 takes a broadcast from rank 1 whose first message is `offer`.
    static func broadcast(offering offer: MemoryOffer, then more: [Envelope] = []) async throws -> (Node, Int32, [Double]) {
        let node = try node(id: 0, count: 2)
        let answers = try link(node, to: 1)
        node.mailbox.deliver(try envelope(offer, from: 1, tag: -1))
        for message in more { node.mailbox.deliver(message) }
        return (node, answers, try await node.broadcastArray(nil as [Double]?, root: 1, tag: -1))
    }

    @Test func singleCopy_badOffersAreErrorsNamingTheRank() async throws {
        let data = [Double](repeating: 2.5, count: 1000)
        let good = data.withUnsafeBytes { Self.offer(of: $0) }
        var wrongType = good
        wrongType.elementCode = Float.wireCode
        var tooLarge = good
        tooLarge.byteCount = 1 << 30
        var ragged = good
        ragged.byteCount = 1001
        var wrapping = good
        wrapping.address = UInt64.max - 100
        var noProcess = good
        noProcess.pid = -1
        var unmapped = good
        unmapped.address = 4096
        for (offer, detail) in [
            (wrongType, "element code 2"), (tooLarge, "over the limit"), (ragged, "1001 bytes"), (wrapping, "impossible address"),
            (noProcess, "process -1"), (unmapped, "cannot be read"),
        ] {
            await #expect {
                _ = try await Self.broadcast(offering: offer)
            } throws: { error in
                guard case NodeError.badCollective(rank: 1, let message) = error else { return false }
                return message.contains(detail)
            }
        }
        withExtendedLifetime(data) {}
    }

    @Test func singleCopy_offerOfThisProcessIsReadAndAnswered() async throws {
        let data = (0..<20_000).map { Double($0) * 0.75 }
        let offer = data.withUnsafeBytes { Self.offer(of: $0) }
        let (node, answers, result) = try await Self.broadcast(offering: offer)
        #expect(result == data)
        try await node.leave()
        let (header, _) = try #require(try Self.readFrame(answers))
        #expect(header.tag == Node.answerTag(-1))
        withExtendedLifetime(data) {}
    }

    @Test func singleCopy_shortDistanceIsOneTo63BytesAfterTheSourceModuloAPage() throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 * 4096, alignment: 4096)
        defer { buffer.deallocate() }
        let base = UInt64(UInt(bitPattern: buffer.baseAddress))
        func short(_ offset: Int, count: Int = 4096, source: UInt64) -> Bool {
            Node.isShortDistance(from: source, to: UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + count]))
        }
        for offset in [1, 8, 16, 31, 48, 63] { #expect(short(offset, source: base), "\(offset)") }
        #expect(short(4096 + 16, source: base))
        #expect(short(16, source: base &- 4096 &* 1000))
        for offset in [0, 64, 100, 2048, 4095, 4096] { #expect(!short(offset, source: base), "\(offset)") }
        // Behind the source, or too small for the slow copy.
        #expect(!short(0, source: base + 16))
        #expect(!short(16, count: 4095, source: base))
    }

    @Test func singleCopy_readsThroughTheBounceBufferGiveTheSameBytes() throws {
        let source = (0..<(300_001 * 8)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        let target = UnsafeMutableRawBufferPointer.allocate(byteCount: source.count + 64, alignment: 4096)
        defer { target.deallocate() }
        try source.withUnsafeBytes { bytes in
            let address = UInt64(UInt(bitPattern: bytes.baseAddress))
            for shift in [0, 16, 40] {
                let count = source.count - shift
                let into = UnsafeMutableRawBufferPointer(rebasing: target[shift..<shift + count])
                into.initializeMemory(as: UInt8.self, repeating: 0)
                try Node.readThroughBounce(from: CurrentProcess.id, address: address + UInt64(shift), into: into)
                #expect(into.elementsEqual(bytes[shift...]), "\(shift)")
            }
        }
    }

    @Test func singleCopy_offerFromAnotherNamespaceFallsBackToTheData() async throws {
        // The identity word does not match (as when the pid names another process here): the
        // rank asks for the data instead of reading.
        let data = (0..<20_000).map { Double($0) - 3 }
        var offer = data.withUnsafeBytes { Self.offer(of: $0) }
        offer.identity &+= 1
        let (node, answers, result) = try await Self.broadcast(offering: offer, then: [try Self.envelope(data, from: 1, tag: -1)])
        #expect(result == data)
        try await node.leave()
        let (header, payload) = try #require(try Self.readFrame(answers))
        #expect(header.tag == Node.answerTag(-1))
        #expect(try BinaryDecoder().decode(OfferAnswer.self, from: payload) == .needData)
        withExtendedLifetime(data) {}
    }
}
