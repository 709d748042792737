import Synchronization

/// Collective operations. Every rank must call the same collectives in the same order. Each
/// call uses its own negative tags, which user tags (0 or more) and `.any` never match.
/// Trees are binomial (log-depth); `allReduce` of large numeric arrays uses a ring
/// (reduce-scatter then all-gather), which moves each element about twice whatever the rank count.
extension Node {
    /// A fresh tag block for one collective call.
    func collectiveTag() -> Int {
        -1 - 4 * collectiveCounter.add(1, ordering: .relaxed).oldValue
    }

    func relative(_ root: Int) -> Int { (id - root + count) % count }
    func absolute(_ relative: Int, root: Int) -> Int { (relative + root) % count }

    /// Waits until every rank has called `barrier` (dissemination algorithm, log rounds). Each
    /// round's message is empty: that it came is what it says, so a Swift rank encodes and
    /// decodes nothing. A Python rank sends `True`, decoded as before; anything else is another
    /// collective's message (the ranks called different collectives): `typeMismatch`.
    public func barrier() async throws {
        let tag = collectiveTag()
        var distance = 1
        while distance < count {
            try await signal(to: (id + distance) % count, tag: tag)
            try Self.checkBarrierMessage(try await envelope(source: (id - distance + count) % count, tag: tag))
            distance *= 2
        }
    }

    /// A barrier round's message: empty from a Swift rank, `True` from a Python rank; anything
    /// else throws `typeMismatch` (the ranks called different collectives).
    static func checkBarrierMessage(_ envelope: Envelope) throws {
        let frame = envelope.frame
        guard frame.kind != RankFrame.message || frame.encoding != .bytes || frame.length != 0 else { return }
        _ = try decode(Bool.self, envelope)
    }

    /// An empty message to `rank` on a collective's `tag`.
    func signal(to rank: Int, tag: Int) async throws {
        let frame = RankFrame(encoding: .bytes, tag: tag, length: 0)
        let now = try sendNow(frame, body: UnsafeRawBufferPointer(start: nil, count: 0), to: rank)
        if now.wentWhole { return }
        if try await now.completed() { return }
        try await post(frame: frame, body: .bytes([]), to: rank)
    }

    /// Gives every rank the root's value. Ranks other than the root pass nil.
    /// - Throws: `NodeError.badArgument` when the root passes nil.
    public func broadcast<T: Codable & Sendable>(_ value: T?, root: Int = 0) async throws -> T {
        try check(rank: root)
        let tag = collectiveTag()
        return try await broadcast(value, root: root, tag: tag)
    }

    func broadcast<T: Codable & Sendable>(_ value: T?, root: Int, tag: Int) async throws -> T {
        if let arrayType = T.self as? any RawNumericArray.Type, RawNumericTypes.isArrayType(arrayType) {
            func typed<A: RawNumericArray>(_: A.Type) async throws -> T {
                let result = try await broadcastArray(value.map { $0 as? A } ?? nil, root: root, tag: tag)
                guard let result = result as? T else { throw NodeError.badArgument("broadcast: cannot convert the array") }
                return result
            }
            return try await typed(arrayType)
        }
        let me = relative(root)
        var current = value
        var mask = 1
        while mask < count {
            if me & mask != 0 {
                current = try await take(T.self, from: absolute(me - mask, root: root), tag: tag)
                break
            }
            mask <<= 1
        }
        guard let current else { throw NodeError.badArgument("broadcast: the root (rank \(root)) passed nil") }
        mask >>= 1
        while mask > 0 {
            if me + mask < count { try await post(current, to: absolute(me + mask, root: root), tag: tag) }
            mask >>= 1
        }
        return current
    }

    /// Combines every rank's value; the root gets the result, the others nil.
    public func reduce<T: Codable & Sendable>(_ value: T, _ operation: Reduction<T>, root: Int = 0) async throws -> T? {
        try check(rank: root)
        return try await reduce(value, operation, root: root, tag: collectiveTag())
    }

    func reduce<T: Codable & Sendable>(_ value: T, _ operation: Reduction<T>, root: Int, tag: Int) async throws -> T? {
        let me = relative(root)
        var accumulated = value
        var mask = 1
        while mask < count {
            if me & mask == 0 {
                let child = me | mask
                if child < count {
                    let theirs = try await take(T.self, from: absolute(child, root: root), tag: tag)
                    accumulated = operation.combine(accumulated, theirs)
                }
            } else {
                try await post(accumulated, to: absolute(me & ~mask, root: root), tag: tag)
                return nil
            }
            mask <<= 1
        }
        return accumulated
    }

    /// Combines every rank's value and gives the result to all.
    public func allReduce<T: Codable & Sendable>(_ value: T, _ operation: Reduction<T>) async throws -> T {
        let tag = collectiveTag()
        if let elementwise = operation.elementwise, count > 1, let array = value as? any RawNumericArray, RawNumericTypes.isArray(array),
            array.elementCount >= Self.ringThreshold * count
        {
            return try await ringAllReduce(array, elementwise, tag: tag) as? T ?? value
        }
        let reduced = try await reduce(value, operation, root: 0, tag: tag)
        return try await broadcast(reduced, root: 0, tag: tag - 1)
    }

    /// Arrays with at least this many elements per rank take the ring.
    static let ringThreshold = 4096

    /// Throws unless `chunk` has the length of chunk `index` of the ring; returns that length.
    @discardableResult
    func checkChunk(_ chunk: some RawNumericArray, index: Int, bounds: [Int], from sender: Int) throws -> Int {
        let expected = bounds[index + 1] - bounds[index]
        guard chunk.elementCount == expected else {
            throw NodeError.badCollective(
                rank: sender, detail: "sent a chunk of \(chunk.elementCount) elements in allReduce where chunk \(index) has \(expected)")
        }
        return expected
    }

    /// One value from each rank, in rank order, at the root; nil elsewhere.
    public func gather<T: Codable & Sendable>(_ value: T, root: Int = 0) async throws -> [T]? {
        try check(rank: root)
        return try await gather(value, root: root, tag: collectiveTag())
    }

    func gather<T: Codable & Sendable>(_ value: T, root: Int, tag: Int) async throws -> [T]? {
        let me = relative(root)
        // Values of the subtree rooted here, indexed from this relative rank.
        var parts: [T] = [value]
        var mask = 1
        while mask < count {
            if me & mask == 0 {
                let child = me | mask
                if child < count {
                    // The child's subtree is relative ranks child ..< child + mask, cut at count.
                    let sender = absolute(child, root: root)
                    let theirs = try await take([T].self, from: sender, tag: tag)
                    let expected = Swift.min(mask, count - child)
                    guard theirs.count == expected else {
                        throw NodeError.badCollective(
                            rank: sender, detail: "sent \(theirs.count) values to gather where its part of the tree has \(expected) ranks")
                    }
                    parts += theirs
                }
            } else {
                try await post(parts, to: absolute(me & ~mask, root: root), tag: tag)
                return nil
            }
            mask <<= 1
        }
        // parts[k] belongs to relative rank k; rotate back to absolute order.
        return (0..<count).map { parts[(($0 - root) + count) % count] }
    }

    /// One value from each rank, in rank order, at every rank.
    public func allGather<T: Codable & Sendable>(_ value: T) async throws -> [T] {
        let tag = collectiveTag()
        let gathered = try await gather(value, root: 0, tag: tag)
        let all = try await broadcast(gathered, root: 0, tag: tag - 1)
        guard all.count == count else {
            // Rank 0 checked what it gathered, so the array was changed on its way down the tree.
            throw NodeError.badCollective(
                rank: broadcastParent(root: 0), detail: "passed on \(all.count) values in allGather where the job has \(count) ranks")
        }
        return all
    }

    /// The rank that sends this one the value of a broadcast from `root` (the root itself for the root).
    func broadcastParent(root: Int) -> Int {
        let me = relative(root)
        return absolute(me - (me & -me), root: root)
    }

    /// The root passes one value per rank (in rank order); each rank gets its own.
    /// - Throws: `NodeError.badArgument` when the root passes nil or the wrong number of values.
    public func scatter<T: Codable & Sendable>(_ values: [T]?, root: Int = 0) async throws -> T {
        try check(rank: root)
        let tag = collectiveTag()
        let me = relative(root)
        // The values of the subtree rooted here, starting with this rank's own.
        var mine: [T]
        var mask = 1
        if me == 0 {
            guard let values, values.count == count else {
                throw NodeError.badArgument("scatter: the root must pass exactly \(count) values, one per rank")
            }
            mine = (0..<count).map { values[absolute($0, root: root)] }
            while mask < count { mask <<= 1 }
        } else {
            while me & mask == 0 { mask <<= 1 }
            // This rank's subtree is relative ranks me ..< me + mask, cut at count.
            let sender = absolute(me - mask, root: root)
            mine = try await take([T].self, from: sender, tag: tag)
            let expected = Swift.min(mask, count - me)
            guard mine.count == expected else {
                throw NodeError.badCollective(
                    rank: sender, detail: "sent \(mine.count) values to scatter where this rank's part of the tree has \(expected) ranks")
            }
        }
        mask >>= 1
        while mask > 0 {
            let child = me + mask
            if child < count, mask < mine.count {
                let portion = Array(mine[mask..<Swift.min(mine.count, 2 * mask)])
                try await post(portion, to: absolute(child, root: root), tag: tag)
            }
            mask >>= 1
        }
        guard let own = mine.first else { throw NodeError.badArgument("scatter: no value arrived for rank \(id)") }
        return own
    }
}
