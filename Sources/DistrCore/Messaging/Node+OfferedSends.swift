/// Single copy for point-to-point sends: a large numeric array sent to a Swift rank of the same
/// worker (joined by a shared-memory ring) goes as an offer (frame kind 3, `OfferedSend`) instead
/// of through the ring: one copy where the ring makes two (in and out). The send still returns at
/// once: the sender keeps a reference to the array until the exchange ends, so the bytes stay put
/// (a caller that changes its array changes its own copy).
///
/// The receiver answers every offer on `offerReplyTag` with the array it will return as the
/// destination, or with none (`DISTR_SINGLE_COPY=refuse` or `off`); a task of the sender reads
/// the answers, writes each array into its destination with `process_vm_writev` (the kernel
/// pins the remote pages, and the receiver's are huge where they can be, a user's array seldom)
/// and says so with an empty frame on `resendTag(id)`, or sends the array there when it cannot.
/// `leave()` sends every array still unanswered the usual way too, so a sender that leaves
/// (`Node.run` does) and exits loses nothing. The offer travels in the ring in its place among
/// the other messages, so the order per sender, `.any` receives and dead-peer errors are those
/// of any message. docs/messages.md §5 has the format.
extension Node {
    /// Arrays of at least this many bytes are offered by `send`. Smaller ones cost less CPU
    /// through the ring: its two copies stay in the caches, where `process_vm_writev` (pinning
    /// each page) copies at about a third of `memcpy`'s speed (docs/performance.md: 4 MiB 0.53
    /// ms of CPU per message offered against 0.42-0.50 through the ring, 8 MiB 0.70-0.92 against
    /// 0.89-1.15).
    static let offeredSendThreshold = 8 << 20

    /// The tag receivers answer offers on (far below any collective's tags).
    static let offerReplyTag = Int.min / 2

    /// The tag an offered array `id` is sent on when the receiver asks for it or the sender leaves.
    static func resendTag(_ id: UInt64) -> Int { offerReplyTag + 1 + Int(truncatingIfNeeded: id & (1 << 60 - 1)) }

    /// Sends `array` to `rank` as an offer when it is large, `rank` reads offers (a Swift rank of
    /// this worker joined by a ring, `DISTR_SINGLE_COPY` not `off`) and fewer than
    /// `OfferedSends.maxOffers` wait for an answer. Returns false when it did not (the caller
    /// sends the usual way).
    func offerIfLarge(_ array: any RawNumericArray, to rank: Int, tag: Int) async throws -> Bool {
        let byteCount = array.rawByteCount
        guard byteCount >= Self.offeredSendThreshold, RawNumericTypes.isArray(array), offeredSends.hasRoom(for: byteCount),
            try await offersMemory(to: rank, byteCount: byteCount),
            let (id, startReader) = offeredSends.keep(array, byteCount: byteCount, for: rank)
        else { return false }
        let element = array.rawElementCode
        let description = OfferedSend(id: id, memory: array.withRawBytes { offer(of: $0, elementCode: element) })
        if startReader { Task.detached { [self] in await readReplies(from: rank) } }
        let frame = RankFrame(kind: RankFrame.offer, encoding: .numeric, element: element, tag: tag, length: OfferedSend.wireSize)
        do {
            try await link(to: rank).send(header: frame.header(), body: .bytes(description.encoded))
        } catch {
            _ = offeredSends.release(id, of: rank)
            throw error
        }
        return true
    }

    /// Reads `rank`'s answers while arrays offered to it wait: writes each array where the
    /// answer says (then sends the empty frame that says so), or sends it when the answer names
    /// no place or the write fails. Waits without spinning (the rank's own receives spin).
    private func readReplies(from rank: Int) async {
        while !offeredSends.readerShouldStop(for: rank) {
            let reply: OfferReply
            do {
                let envelope = try await mailbox.receive(source: rank, tag: Self.offerReplyTag) {
                    progress.armSilenced()
                    requestDoorbells(from: rank)
                }
                reply = try Self.decode(OfferReply.self, envelope)
            } catch {
                // The rank has gone (or the job was aborted, or it answered nonsense): no answer comes.
                offeredSends.forget(rank)
                return
            }
            guard let array = offeredSends.beginWrite(reply.id, of: rank) else { continue }
            if let destination = reply.destination, write(array, into: destination, of: rank) {
                let written = RankFrame(encoding: .bytes, tag: Self.resendTag(reply.id), length: 0)
                try? await link(to: rank).send(header: written.header(), body: .bytes([]))  // Fails only when the rank has gone.
            } else {
                try? await resend(array, id: reply.id, to: rank)  // Likewise.
            }
            offeredSends.endWrite()
        }
    }

    /// Whether all of `array` was copied into `destination` in `rank`'s process (checked: the
    /// size and element type of the array, the process's identity word).
    private func write(_ array: any RawNumericArray, into destination: MemoryOffer, of rank: Int) -> Bool {
        let byteCount = array.rawByteCount
        guard destination.byteCount == byteCount, destination.elementCode == array.rawElementCode, destination.pid > 0,
            (try? mayRead(destination, from: rank)) == true  // Any failure: send the array instead.
        else { return false }
        let written = array.withRawBytes { bytes in
            Result { () throws(SystemError) in try ProcessMemory.write(to: destination.pid, address: destination.address, from: bytes) }
        }
        if case .failure = written { return false }
        return true
    }

    private func resend(_ array: any RawNumericArray, id: UInt64, to rank: Int) async throws {
        let byteCount = array.rawByteCount
        let frame = RankFrame(encoding: .numeric, element: array.rawElementCode, tag: Self.resendTag(id), length: byteCount)
        try await link(to: rank).send(header: frame.header(), body: .numeric(array))
    }

    /// For `leave()`: sends every offered array not answered yet the usual way, so that it
    /// outlives this process, and waits for the writes under way.
    func resendUnanswered() async {
        for (rank, id, array) in offeredSends.takeAll() {
            try? await resend(array, id: id, to: rank)  // A rank that has gone needs nothing.
        }
        // A write takes milliseconds at most (a memory copy); its end is not signalled.
        while offeredSends.isWriting { try? await Task.sleep(for: .milliseconds(1)) }  // Cancelled: look again.
    }

    /// The next matching message for a user's receive, an offer already turned into its array.
    func userEnvelope(source: Int?, tag: Int?) async throws -> Envelope {
        let envelope = try await envelope(source: source, tag: tag)
        guard envelope.frame.kind == RankFrame.offer else { return envelope }
        return try await takeOffered(envelope)
    }

    /// Takes the array `envelope` offers: asks the sender to write it into the array this
    /// receive returns (or, without single copy, to send it), and waits for the sender's word.
    /// - Throws: `NodeError.badFrame` for an offer that does not describe an array, or from
    ///   another node; `.peerExited` when the sender exited before its array could be had.
    func takeOffered(_ envelope: Envelope) async throws -> Envelope {
        let rank = envelope.source
        let element = envelope.frame.element
        let offered = try OfferedSend(decoding: envelope.payload, element: element, from: rank, limit: maxMessageBytes)
        guard placements.indices.contains(rank), placements[rank].worker == workerIndex, rank != id else {
            throw NodeError.badFrame(rank: rank, detail: "an offer of memory from a rank of another node")
        }
        let byteCount = offered.memory.byteCount
        let count = byteCount / (RawNumericTypes.elementSize(code: element) ?? 1)
        guard var array = pool.take(code: element, count: count) ?? RawNumericTypes.uninitialized(code: element, count: count) else {
            throw NodeError.badFrame(rank: rank, detail: "an offer of element code \(element)")
        }
        // The sender writes: the kernel pins the destination's pages, and this one asks for huge
        // pages (a user's array, the source, usually has small ones, which made reading 1.5x slower).
        let destination: MemoryOffer? =
            singleCopy == .on
            ? array.withMutableRawBytes { bytes in
                Memory.preferHugePages(bytes)
                return offer(of: UnsafeRawBufferPointer(bytes), elementCode: element)
            } : nil
        let reply = OfferReply(id: offered.id, destination: destination)
        try? await post(reply, to: rank, tag: Self.offerReplyTag)  // A sender that has left sent the array already.
        let resent: Envelope
        do {
            resent = try await self.envelope(source: rank, tag: Self.resendTag(offered.id))
        } catch {
            // A sender still alive may yet write into the array: it must never be reused.
            if destination != nil { ParkedMemory.keep(array) }
            throw error
        }
        if destination != nil, resent.frame.encoding == .bytes, resent.frame.length == 0 {
            // Written.
        } else if resent.frame.holdsArray, resent.frame.element == element, resent.frame.length == byteCount, let data = resent.array {
            pool.give(array)
            array = data
        } else {
            throw NodeError.badFrame(rank: rank, detail: "sent something else where it offered \(byteCount) bytes of element code \(element)")
        }
        let frame = RankFrame(encoding: .numeric, element: element, tag: envelope.frame.tag, length: byteCount)
        return Envelope(source: rank, frame: frame, payload: [], array: array)
    }
}
