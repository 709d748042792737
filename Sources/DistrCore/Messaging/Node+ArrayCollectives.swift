/// Broadcast and allReduce of numeric arrays: the same trees, ring, tags and operand order as
/// the generic collectives (and as Python's), with each hop between two Swift ranks of one worker
/// free to go as a `MemoryOffer` (see Node+SingleCopy.swift) instead of through the ring.
extension Node {
    /// The binomial-tree broadcast of `Node.broadcast`, for numeric arrays. A rank that is
    /// offered the root's memory passes the same offer on to its children before reading it
    /// itself, so every rank of the worker reads the root's array at once rather than one level
    /// after another; each answers `done` to its parent only after its children have, so the
    /// root's memory stays in use until every reader is finished. A root read by two or more
    /// ranks offers a copy of its array in a shared segment the readers map, or where none can
    /// be made in huge pages (`BroadcastStaging`). On the 2-core VM, an 8 MB broadcast on 8
    /// ranks of one worker took 6.4-6.7 ms of CPU (all ranks) out of a segment, 8.6-9.1 out of
    /// huge pages; earlier measurements (4 ranks, then 8) gave 4.9-5.2 and 13.2-13.4 ms when
    /// readers read the root's own array, 6.2-7.1 and 16-17 ms through the rings (a copy in and
    /// a copy out per hop) (`distr-bench --rank broadcast`; docs/performance.md).
    func broadcastArray<A: RawNumericArray>(_ value: A?, root: Int, tag: Int) async throws -> A {
        let me = relative(root)
        var mask = 1
        var parent: Int?
        while mask < count {
            if me & mask != 0 {
                parent = absolute(me - mask, root: root)
                break
            }
            mask <<= 1
        }
        // Each child with the number of ranks in its subtree (the most that may read an offer through it).
        var children: [(rank: Int, ranks: Int)] = []
        mask >>= 1
        while mask > 0 {
            if me + mask < count { children.append((absolute(me + mask, root: root), Swift.min(mask, count - me - mask))) }
            mask >>= 1
        }
        var current = value
        var parentOffer: MemoryOffer?
        if let parent {
            switch try await takeArray(A.self, from: parent, tag: tag) {
            case .array(let array): current = array
            case .offer(let offer): parentOffer = offer
            }
        }
        guard let byteCount = parentOffer?.byteCount ?? current.map({ $0.rawByteCount }) else {
            throw NodeError.badArgument("broadcast: the root (rank \(root)) passed nil")
        }
        var offered: [Int] = []
        var plain: [Int] = []
        var readers = 0
        for child in children {
            if try await offersMemory(to: child.rank, byteCount: byteCount) {
                offered.append(child.rank)
                readers += child.ranks
            } else {
                plain.append(child.rank)
            }
        }
        if let parentOffer, let parent {
            for child in offered { try await post(parentOffer, to: child, tag: tag) }
            current = try await readArray(A.self, parentOffer, from: parent, tag: tag)
        }
        guard let current else { throw NodeError.badArgument("broadcast: the root (rank \(root)) passed nil") }
        var staged: StagingRegion?
        var own: MemoryOffer?
        if parentOffer == nil, !offered.isEmpty {
            // Two or more readers: they copy out of a shared segment they map (or huge pages),
            // faster than out of the array's own pages (BroadcastStaging). Neither it nor
            // `current` changes before the answers are in.
            staged = readers >= 2 ? current.withRawBytes { staging.stage($0) } : nil
            own =
                if let staged {
                    offer(of: UnsafeRawBufferPointer(rebasing: staged.bytes[..<byteCount]), elementCode: A.elementCode, segment: staged.segment)
                } else {
                    current.withRawBytes { offer(of: $0, elementCode: A.elementCode) }
                }
        }
        do {
            if let own { for child in offered { try await post(own, to: child, tag: tag) } }
            for child in plain { try await post(current, to: child, tag: tag) }
            for child in offered { try await awaitAnswer(from: child, tag: tag, doneAfterData: true) { current } }
        } catch {
            // Readers below may still be copying the offered memory: it must outlive them.
            if own != nil { ParkedMemory.keep(staged.map { $0 as any Sendable } ?? current) }
            throw error
        }
        if let staged { staging.giveBack(staged) }
        if parentOffer != nil, let parent { try await answer(.done, to: parent, tag: tag) }
        return current
    }

    /// The array `offer` describes, read from the offering process, or (when this rank may not
    /// read it) asked for and received as a message. `done` is left to the caller.
    private func readArray<A: RawNumericArray>(_ type: A.Type, _ offer: MemoryOffer, from rank: Int, tag: Int) async throws -> A {
        let elements = offer.byteCount / A.elementSize
        if try mayRead(offer, from: rank) {
            var array = A.uninitialized(count: elements)
            array.withMutableRawBytes { Memory.preferHugePages($0) }
            try array.withMutableRawBytes { bytes in Result { () throws(NodeError) in try read(offer, into: bytes, from: rank) } }.get()
            return array
        }
        try await answer(.needData, to: rank, tag: tag)
        return try await takeResent(A.self, from: rank, tag: tag, elements: elements)
    }
}

/// What a rank of the ring allReduce passes on at a step: a chunk that lies in its input or its
/// result (offered, or copied into a message), or an array that arrived as a message (sent on as is).
private enum RingChunk<A: RawNumericArray> {
    case input(Int)
    case result(Int)
    case array(Int, A)

    var index: Int {
        switch self {
        case .input(let index), .result(let index), .array(let index, _): index
        }
    }
}

extension Node {
    /// Ring reduce-scatter, then ring all-gather, over `count` chunks (chunk i is elements
    /// i*L/n ..< (i+1)*L/n). Each chunk is reduced on one rank only, whose result the all-gather
    /// hands to all, so every rank gets bit-identical values whatever the operation's rounding.
    ///
    /// Reduce-scatter step s sends the chunk combined at step s - 1 (first this rank's own chunk,
    /// `id`) and receives chunk id - s - 1, which it combines with its own part (`mine ⊕ theirs`,
    /// the operand order of the tree) into the result. Between Swift ranks of one worker a chunk
    /// is offered and read in pieces of `ringPiece` bytes that stay in the cache while they are
    /// combined; otherwise it arrives as an array, is combined in place and sent on from its own
    /// memory. The all-gather reads (or receives) each finished chunk straight into the result.
    func ringAllReduce<A: RawNumericArray>(_ input: A, _ operation: ElementwiseOperation, tag: Int) async throws -> A {
        guard let kernel = RawNumericTypes.kernels[A.elementCode] else {
            throw NodeError.badArgument("allReduce: no element-wise operation for element code \(A.elementCode)")
        }
        let total = input.elementCount
        let size = A.elementSize
        let bounds = (0...count).map { $0 * total / count }
        let next = (id + 1) % count
        let prev = (id + count - 1) % count
        func bytes(_ index: Int) -> Range<Int> { bounds[index] * size..<bounds[index + 1] * size }
        var result = A.uninitialized(count: total)
        // The next rank reads most chunks out of `result`: from huge pages about twice as fast
        // (BroadcastStaging). Asked before the first write, so that its first faults take them.
        result.withMutableRawBytes { Memory.preferHugePages($0) }
        var scratch: A?
        // The memory of `input` and `result` does not move: `result` is written only in place.
        let inputBase = input.withRawBytes { $0 }
        let resultBase = result.withMutableRawBytes { UnsafeRawBufferPointer($0) }
        func region(_ chunk: RingChunk<A>) -> UnsafeRawBufferPointer {
            switch chunk {
            case .input(let index): UnsafeRawBufferPointer(rebasing: inputBase[bytes(index)])
            case .result(let index): UnsafeRawBufferPointer(rebasing: resultBase[bytes(index)])
            case .array: UnsafeRawBufferPointer(start: nil, count: 0)
            }
        }
        func message(_ chunk: RingChunk<A>) throws -> A {
            if case .array(_, let array) = chunk { return array }
            guard let array = A.fromRawBytes(region(chunk)) else { throw NodeError.badArgument("allReduce: cannot split the array") }
            return array
        }
        var offeredAny = false
        /// Sends `chunk` to `next`; true when it went as an offer (answer awaited later).
        func send(_ chunk: RingChunk<A>, tag: Int) async throws -> Bool {
            let byteCount = bytes(chunk.index).count
            if case .array = chunk {
            } else if try await offersMemory(to: next, byteCount: byteCount) {
                offeredAny = true
                try await post(offer(of: region(chunk), elementCode: A.elementCode), to: next, tag: tag)
                return true
            }
            try await post(try message(chunk), to: next, tag: tag)
            return false
        }

        do {
            var carried = RingChunk<A>.input(id)
            for step in 0..<(count - 1) {
                let receiving = (id - step - 1 + 2 * count) % count
                let sent = carried
                let offered = try await send(sent, tag: tag)
                let mine = UnsafeRawBufferPointer(rebasing: inputBase[bytes(receiving)])
                let elements = bounds[receiving + 1] - bounds[receiving]
                var theirs: A?
                var resent = false
                switch try await takeArray(A.self, from: prev, tag: tag, byteCount: bytes(receiving).count) {
                case .array(let array): theirs = array
                case .offer(let offer):
                    if try mayRead(offer, from: prev) {
                        if scratch == nil { scratch = A.uninitialized(count: Swift.max(1, Self.ringPiece / size)) }
                        try result.withMutableRawBytes { whole in
                            scratch?.withMutableRawBytes { piece in
                                Result { () throws(NodeError) in
                                    let out = UnsafeMutableRawBufferPointer(rebasing: whole[bytes(receiving)])
                                    var done = 0
                                    while done < mine.count {
                                        let part = UnsafeMutableRawBufferPointer(rebasing: piece[..<Swift.min(piece.count, mine.count - done)])
                                        try read(offer, at: done, into: part, from: prev)
                                        let span = done..<done + part.count
                                        kernel.combine(
                                            operation, UnsafeRawBufferPointer(rebasing: mine[span]), UnsafeRawBufferPointer(part),
                                            into: UnsafeMutableRawBufferPointer(rebasing: out[span]), count: part.count / size)
                                        done += part.count
                                    }
                                }
                            } ?? .success(())
                        }.get()
                        try await answer(.done, to: prev, tag: tag)
                    } else {
                        try await answer(.needData, to: prev, tag: tag)
                        resent = true
                    }
                }
                if offered { try await awaitAnswer(from: next, tag: tag, doneAfterData: false) { try message(sent) } }
                if resent { theirs = try await takeResent(A.self, from: prev, tag: tag, elements: elements) }
                let received: RingChunk<A>
                if var array = theirs {
                    try checkChunk(array, index: receiving, bounds: bounds, from: prev)
                    array.withMutableRawBytes { kernel.combine(operation, mine, UnsafeRawBufferPointer($0), into: $0, count: elements) }
                    received = .array(receiving, array)
                } else {
                    received = .result(receiving)
                }
                carried = received
            }
            // `carried` is now the whole result for chunk id + 1; the all-gather passes every chunk
            // on, each placed in the result (read straight into it when offered).
            func place(_ chunk: RingChunk<A>) {
                guard case .array(let index, let array) = chunk else { return }
                array.withRawBytes { bytes in
                    result.withMutableRawBytes {
                        UnsafeMutableRawBufferPointer(rebasing: $0[bounds[index] * size..<bounds[index] * size + bytes.count]).copyMemory(from: bytes)
                    }
                }
            }
            place(carried)
            for step in 0..<(count - 1) {
                let receiving = (id - step + 2 * count) % count
                let sent = carried
                let offered = try await send(sent, tag: tag - 1)
                let range = bytes(receiving)
                var resent = false
                switch try await takeArray(A.self, from: prev, tag: tag - 1, byteCount: range.count) {
                case .array(let array):
                    try checkChunk(array, index: receiving, bounds: bounds, from: prev)
                    carried = .array(receiving, array)
                    place(carried)
                case .offer(let offer):
                    if try mayRead(offer, from: prev) {
                        try result.withMutableRawBytes { whole in
                            Result { () throws(NodeError) in
                                try read(offer, into: UnsafeMutableRawBufferPointer(rebasing: whole[range]), from: prev)
                            }
                        }.get()
                        carried = .result(receiving)
                        try await answer(.done, to: prev, tag: tag - 1)
                    } else {
                        try await answer(.needData, to: prev, tag: tag - 1)
                        resent = true
                    }
                }
                if offered { try await awaitAnswer(from: next, tag: tag - 1, doneAfterData: false) { try message(sent) } }
                if resent {
                    carried = .array(receiving, try await takeResent(A.self, from: prev, tag: tag - 1, elements: range.count / size))
                    place(carried)
                }
            }
            return result
        } catch {
            // The next rank may still be copying a chunk offered out of `input` or `result`:
            // their memory must outlive it.
            if offeredAny { ParkedMemory.keep([input, result]) }
            throw error
        }
    }

    /// Bytes of an offered chunk read at a time in the reduce-scatter (they stay in the cache
    /// while they are combined).
    static let ringPiece = 128 << 10
}
