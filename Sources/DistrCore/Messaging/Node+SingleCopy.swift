/// Single-copy transfers inside collectives: between two Swift ranks joined by a shared-memory
/// ring (same worker), a large numeric array is not pushed through the ring (a copy in, a copy
/// out) but offered: the sender posts a `MemoryOffer` (its pid, the address and length of the
/// bytes), the receiver copies them straight out of the sender's memory with `process_vm_readv`
/// into its result, and answers on the collective's answer tag (tag - 2) so that the sender knows
/// its memory is free again. A receiver that cannot read (the kernel refuses) answers
/// `needData` and the sender posts the array the usual way. Only ranks that said
/// `helloReadingOffers` to the worker get offers (the worker tells the rank connecting to one
/// with `readsOffers`); Python ranks never say it. A Swift rank takes either an offer or an array
/// on the same tag.
struct MemoryOffer: Codable, Sendable, Equatable {
    var pid: Int32
    var address: UInt64
    var byteCount: Int
    var elementCode: UInt8
    /// `ProcessMemory.identity` of the offering process: the reader checks it first, so that a
    /// pid that names another process here (another pid namespace) is never read from.
    var identity: UInt64
    var identityAddress: UInt64
    /// A broadcast root's shared segment holding the bytes from its start (`BroadcastStaging`):
    /// its descriptor in the offering process (-1: none) and its inode. A reader maps it through
    /// `/proc/PID/fd/N` and copies out of it (`MappedRegions`); one that cannot reads `address`
    /// as usual.
    var segment: Int32 = -1
    var segmentInode: UInt64 = 0
}

/// What the receiver of an offer answers.
enum OfferAnswer: UInt8, Codable, Sendable {
    /// The bytes were copied (and, in a broadcast, by every rank the offer was passed on to).
    case done = 1
    /// Send the array as a message; `done` follows once it has arrived.
    case needData = 2
}

/// Whether collectives offer memory to ranks on the same worker (`DISTR_SINGLE_COPY`).
enum SingleCopyMode: Sendable {
    /// Offer large arrays and read offers (the default).
    case on
    /// Never offer; answer every offer with `needData`.
    case off
    /// Offer, but answer every offer with `needData`: the fallback path, for tests.
    case refuse

    /// - Throws: `NodeError.badArgument` for a value other than on, off or refuse.
    static func parse(_ text: String?) throws(NodeError) -> SingleCopyMode {
        switch text {
        case nil, "", "on": return .on
        case "off": return .off
        case "refuse": return .refuse
        case let other?: throw .badArgument("DISTR_SINGLE_COPY=\(other) is not a mode (on, the default, off or refuse)")
        }
    }
}

/// An array a collective received: either its bytes already here, or an offer to read them.
enum IncomingArray<A: RawNumericArray> {
    case array(A)
    case offer(MemoryOffer)
}

extension Node {
    /// Arrays of at least this many bytes are offered rather than sent.
    static let singleCopyThreshold = 64 << 10

    /// The tag offers on `tag` are answered on.
    static func answerTag(_ tag: Int) -> Int { tag - 2 }

    /// Whether `byteCount` bytes for `rank` go as an offer: a rank of this worker joined by a
    /// shared-memory ring (which only Swift ranks that both asked for shared memory have).
    func offersMemory(to rank: Int, byteCount: Int) async throws -> Bool {
        guard singleCopy != .off, byteCount >= Self.singleCopyThreshold, rank != id, placements.indices.contains(rank),
            placements[rank].worker == workerIndex
        else { return false }
        // The worker says whether `rank` reads offers before it hands over the connection.
        guard try await link(to: rank).hasRing, offerReaders.withLock({ $0.contains(rank) }) else { return false }
        singleCopyCounts.add(1, ordering: .relaxed)
        return true
    }

    /// An offer of `bytes`, which must stay valid and unchanged until every answer to it is in.
    /// `segment`: the shared segment (descriptor, inode) that holds `bytes` from its start.
    func offer(of bytes: UnsafeRawBufferPointer, elementCode: UInt8, segment: (descriptor: Int32, inode: UInt64)? = nil) -> MemoryOffer {
        MemoryOffer(
            pid: CurrentProcess.id, address: UInt64(UInt(bitPattern: bytes.baseAddress)), byteCount: bytes.count, elementCode: elementCode,
            identity: ProcessMemory.identity.value, identityAddress: ProcessMemory.identity.address, segment: segment?.descriptor ?? -1,
            segmentInode: segment?.inode ?? 0)
    }

    /// Waits for `rank`'s answer to an offer on `tag`; when it needs the data, posts it (an array
    /// of `A`), and then, with `doneAfterData`, waits for its `done` (a broadcast: the rank may
    /// have passed the offer on). In the ring, posting the data ends it: every rank answers
    /// the rank before it before it waits for its own data, so nothing waits in a circle.
    func awaitAnswer<A: RawNumericArray>(from rank: Int, tag: Int, doneAfterData: Bool, resending data: () throws -> A) async throws {
        while true {
            switch try await take(OfferAnswer.self, from: rank, tag: Self.answerTag(tag)) {
            case .done: return
            case .needData:
                try await post(try data(), to: rank, tag: tag)
                if !doneAfterData { return }
            }
        }
    }

    /// Takes the array `rank` sends after a `needData` answer on `tag` (it must hold `elements`).
    func takeResent<A: RawNumericArray>(_ type: A.Type, from rank: Int, tag: Int, elements: Int) async throws -> A {
        let array = try await take(A.self, from: rank, tag: tag)
        guard array.elementCount == elements else {
            throw NodeError.badCollective(rank: rank, detail: "sent \(array.elementCount) elements where its offer had \(elements)")
        }
        return array
    }

    func answer(_ answer: OfferAnswer, to rank: Int, tag: Int) async throws {
        try await post(answer, to: rank, tag: Self.answerTag(tag))
    }

    /// The next array from `rank` on `tag`: an array message, or an offer (checked: its element
    /// type, and `byteCount` when given, else at most the message limit).
    /// - Throws: `NodeError.badCollective` naming `rank` for an offer that does not fit.
    func takeArray<A: RawNumericArray>(_ type: A.Type, from rank: Int, tag: Int, byteCount expected: Int? = nil) async throws -> IncomingArray<A> {
        let envelope = try await envelope(source: rank, tag: tag)
        let frame = envelope.frame
        guard frame.encoding == .codable, frame.fingerprint == RankFrame.fingerprint(of: MemoryOffer.self) else {
            return .array(try Self.decode(A.self, envelope))
        }
        let offer = try Self.decode(MemoryOffer.self, envelope)
        try check(offer, of: A.self, from: rank, byteCount: expected)
        return .offer(offer)
    }

    /// Throws unless `offer` describes a plausible range of `A` elements.
    func check<A: RawNumericArray>(_ offer: MemoryOffer, of type: A.Type, from rank: Int, byteCount expected: Int?) throws {
        func bad(_ detail: String) -> NodeError { .badCollective(rank: rank, detail: "offered memory \(detail)") }
        guard offer.elementCode == A.elementCode else {
            throw bad("of element code \(offer.elementCode) where an array of element code \(A.elementCode) belongs")
        }
        guard offer.pid > 0 else { throw bad("of process \(offer.pid)") }
        if let expected {
            guard offer.byteCount == expected else { throw bad("of \(offer.byteCount) bytes where \(expected) belong") }
        } else {
            guard offer.byteCount >= 0, offer.byteCount <= maxMessageBytes, offer.byteCount % A.elementSize == 0 else {
                throw bad("of \(offer.byteCount) bytes (not a whole number of elements, or over the limit of \(maxMessageBytes))")
            }
        }
        let (end, overflow) = offer.address.addingReportingOverflow(UInt64(offer.byteCount))
        guard offer.address != 0 || offer.byteCount == 0, !overflow, end <= UInt64(Int.max) else {
            throw bad("at an impossible address (\(offer.address), \(offer.byteCount) bytes)")
        }
    }

    /// Whether this rank may read `offer`'s memory: single copy is on, and the process `offer.pid`
    /// here is the one that made the offer (it holds the identity the offer names).
    /// - Throws: `NodeError.badCollective` naming `rank` when the kernel reports an error other
    ///   than a refusal.
    func mayRead(_ offer: MemoryOffer, from rank: Int) throws -> Bool {
        guard singleCopy == .on else { return false }
        var identity: UInt64 = 0
        do {
            try withUnsafeMutableBytes(of: &identity) { try ProcessMemory.read(from: offer.pid, address: offer.identityAddress, into: $0) }
        } catch let error as SystemError {
            // Unmapped there too: another process, not a lie of the peer's.
            if ProcessMemory.isRefusal(error) || error.errno == Errno.badAddress.rawValue { return false }
            throw NodeError.badCollective(rank: rank, detail: "offered memory of process \(offer.pid), which cannot be read: \(error)")
        }
        return identity == offer.identity
    }

    /// How many arrays this rank has offered to another (for tests and diagnostics).
    package var offeredArrays: Int { singleCopyCounts.load(ordering: .relaxed) }

    /// How many broadcasts this rank, as their root, copied into a staging region before offering them.
    package var stagedBroadcasts: Int { staging.count }

    /// How many other roots' broadcast segments this rank has mapped to read from.
    package var mappedSegments: Int { mappedRegions.count }

    /// How many arrays or regions this process keeps for good because an exchange that offered
    /// them failed while another process might still read them (`ParkedMemory`).
    package var parkedMemory: Int { ParkedMemory.count }

    /// Copies `destination.count` bytes at `offset` of `offer` (checked, and `mayRead`) from the
    /// offering process into `destination`.
    /// - Throws: `NodeError.badCollective` naming `rank` when the memory is not there.
    func read(_ offer: MemoryOffer, at offset: Int = 0, into destination: UnsafeMutableRawBufferPointer, from rank: Int) throws(NodeError) {
        precondition(offset >= 0 && offset + destination.count <= offer.byteCount, "read beyond a checked offer")
        let source = offer.address + UInt64(offset)
        // A broadcast root's shared segment, mapped here once: a plain copy, no page pinning.
        if offer.segment >= 0, mappedRegions.copy(offer, at: offset, into: destination) { return }
        do {
            if Self.isShortDistance(from: source, to: destination) {
                try Self.readThroughBounce(from: offer.pid, address: source, into: destination)
            } else {
                try ProcessMemory.read(from: offer.pid, address: source, into: destination)
            }
        } catch {
            throw .badCollective(
                rank: rank, detail: "offered \(offer.byteCount) bytes at \(offer.address) in process \(offer.pid), which cannot be read: \(error)")
        }
    }

    /// Whether `destination` lies 1 to 63 bytes after `source` modulo a page. The kernel's copy
    /// (and glibc's `memcpy` from 4 KiB to about 1 MiB) use `rep movsb`, which on the AMD EPYC of
    /// the machines measured runs 8 to 60 times slower when the distance is 1 to 31 bytes (the
    /// stores alias the next loads): 8 MB took 3-24 ms instead of 0.35-1.1 ms. 32-63 measured
    /// fast, and are taken as well for a margin.
    static func isShortDistance(from source: UInt64, to destination: UnsafeMutableRawBufferPointer) -> Bool {
        guard let base = destination.baseAddress, destination.count >= 4096 else { return false }
        let distance = (UInt64(UInt(bitPattern: base)) &- source) & 4095
        return distance != 0 && distance < 64
    }

    /// Bytes a short-distance read goes through at a time.
    static let bouncePiece = 64 << 10

    /// `ProcessMemory.read` in pieces through a buffer half a page away from both the source and
    /// `destination` (see `isShortDistance`): two copies at full speed instead of one slow one.
    static func readThroughBounce(from pid: Int32, address: UInt64, into destination: UnsafeMutableRawBufferPointer) throws(SystemError) {
        guard let base = destination.baseAddress else { return }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bouncePiece + 4096, alignment: 4096)
        defer { buffer.deallocate() }
        // Half a page after the source; the destination is then 2049-2111 bytes after the buffer.
        let bounce = buffer + Int((address &+ 2048) & 4095)
        var done = 0
        while done < destination.count {
            let piece = UnsafeMutableRawBufferPointer(start: bounce, count: Swift.min(bouncePiece, destination.count - done))
            try ProcessMemory.read(from: pid, address: address + UInt64(done), into: piece)
            (base + done).copyMemory(from: bounce, byteCount: piece.count)
            done += piece.count
        }
    }
}
