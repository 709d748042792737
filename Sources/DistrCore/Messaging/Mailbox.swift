import Synchronization

/// Messages that arrived and receives that wait, matched by source and tag.
///
/// A receive takes the first queued message that matches (so messages of one sender are taken
/// in the order they were sent); if there is none it waits. It fails instead when the rank it
/// waits for has exited and none of its connections is still open (all it sent has been read),
/// when a connection from it was closed because it broke the protocol, or when the job is aborted.
final class Mailbox: Sendable {
    struct Waiter {
        var id: UInt64
        var source: Int?
        var tag: Int?
        var resumer: Resumer

        var continuation: CheckedContinuation<Envelope, any Error> { resumer.continuation }
    }

    /// A waiting receive's continuation, held by reference: `CheckedContinuation` comes from a
    /// library whose types' layout is not known to this module, so a `Waiter` that held it
    /// directly (and every `Waiter?` a delivery looks up, found or not) would be copied and
    /// destroyed through the runtime's value witnesses on every message (see `HeldArray`).
    final class Resumer: Sendable {
        let continuation: CheckedContinuation<Envelope, any Error>
        init(_ continuation: CheckedContinuation<Envelope, any Error>) { self.continuation = continuation }
    }

    struct State {
        var queue: [Envelope] = []
        var waiters: [Waiter] = []
        var exited: [Int: Int32] = [:]
        var openFrom: [Int: Int] = [:]
        /// Ranks whose connection was closed because they broke the protocol, and why.
        var broken: [Int: NodeError] = [:]
        var aborted: String?
        var nextID: UInt64 = 0
    }

    let selfRank: Int
    let count: Int
    private let state = Mutex(State())
    /// Counts what could end a receive that waits without being registered (a spinning one):
    /// a message queued, a connection closed, a rank gone, the abort. Bumped under the lock.
    private let changes = Atomic<Int>(0)

    init(selfRank: Int, count: Int) {
        self.selfRank = selfRank
        self.count = count
    }

    static func matches(_ envelope: Envelope, source: Int?, tag: Int?) -> Bool {
        if let source, envelope.source != source { return false }
        if let tag { return envelope.frame.tag == tag }
        // .any takes user messages only; collectives use negative tags.
        return envelope.frame.tag >= 0
    }

    /// Why a receive for (source, tag) can never be satisfied now, if it cannot.
    static func failure(_ s: State, source: Int?, selfRank: Int, count: Int) -> NodeError? {
        if let reason = s.aborted { return .aborted(reason) }
        func gone(_ rank: Int) -> Bool { s.exited[rank] != nil && (s.openFrom[rank] ?? 0) == 0 || s.broken[rank] != nil }
        if let source {
            guard source != selfRank else { return nil }
            if let error = s.broken[source] { return error }
            if gone(source) { return .peerExited(rank: source, status: s.exited[source] ?? 0) }
            return nil
        }
        let others = (0..<count).filter { $0 != selfRank }
        if !others.isEmpty && others.allSatisfy(gone) {
            return others.lazy.compactMap { s.broken[$0] }.first ?? .allPeersExited
        }
        return nil
    }

    func deliver(_ envelope: Envelope) {
        let waiter = state.withLock { s -> Waiter? in
            if let index = s.waiters.firstIndex(where: { Self.matches(envelope, source: $0.source, tag: $0.tag) }) {
                return s.waiters.remove(at: index)
            }
            s.queue.append(envelope)
            changes.add(1, ordering: .releasing)
            return nil
        }
        waiter?.continuation.resume(returning: envelope)
    }

    /// Delivers `envelope`, unless the receive for (`source`, `tag`) that read it may keep it:
    /// it matches, no queued message does (one would be older), and no receive that waits
    /// already wants it (that one came first, and `deliver` would give it that). Then it is
    /// returned instead, never queued: one pass under the lock where `deliver` then `take` made
    /// two, and no queue traffic.
    func deliver(_ envelope: Envelope, claimingFor source: Int?, tag: Int?) -> Envelope? {
        let (waiter, claimed) = state.withLock { s -> (Waiter?, Bool) in
            let earlier = s.waiters.firstIndex(where: { Self.matches(envelope, source: $0.source, tag: $0.tag) })
            if earlier == nil && Self.matches(envelope, source: source, tag: tag)
                && !s.queue.contains(where: { Self.matches($0, source: source, tag: tag) })
            {
                return (nil, true)
            }
            if let index = earlier {
                return (s.waiters.remove(at: index), false)
            }
            s.queue.append(envelope)
            changes.add(1, ordering: .releasing)
            return (nil, false)
        }
        waiter?.continuation.resume(returning: envelope)
        return claimed ? envelope : nil
    }

    /// The first queued match, or the next one delivered. `parked` runs once the receive waits
    /// (registered, so a delivery from then on reaches it), outside the lock; it may deliver.
    func receive(source: Int?, tag: Int?, parked: () -> Void = {}) async throws -> Envelope {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let outcome = state.withLock { s -> Result<Envelope, any Error>? in
                    if let index = s.queue.firstIndex(where: { Self.matches($0, source: source, tag: tag) }) {
                        return .success(s.queue.remove(at: index))
                    }
                    if let error = Self.failure(s, source: source, selfRank: selfRank, count: count) { return .failure(error) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    s.waiters.append(Waiter(id: id, source: source, tag: tag, resumer: Resumer(continuation)))
                    return nil
                }
                guard let outcome else { return parked() }
                continuation.resume(with: outcome)
            }
        } onCancel: {
            let waiter = state.withLock { s -> Waiter? in
                guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// The first queued match, without waiting.
    func take(source: Int?, tag: Int?) -> Envelope? {
        state.withLock { s in
            guard let index = s.queue.firstIndex(where: { Self.matches($0, source: source, tag: tag) }) else { return nil }
            return s.queue.remove(at: index)
        }
    }

    /// Whether a match is queued (nothing is taken).
    func holds(source: Int?, tag: Int?) -> Bool {
        state.withLock { s in s.queue.contains { Self.matches($0, source: source, tag: tag) } }
    }

    /// True when a receive for `source` can never be satisfied now.
    func isHopeless(source: Int?) -> Bool {
        state.withLock { Self.failure($0, source: source, selfRank: selfRank, count: count) != nil }
    }

    /// A count that changes whenever a receive that spins should look into the mailbox again
    /// (`take`, `isHopeless`): a load, where a look takes the lock.
    var changeCount: Int { changes.load(ordering: .acquiring) }

    /// Receives parked and waiting for a message (a ring's reader asks for the doorbell while
    /// there are any; tests use it to reach the waiting path).
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    func connectionOpened(from rank: Int) { state.withLock { $0.openFrom[rank, default: 0] += 1 } }

    /// `failure`: the connection was closed because the sender broke the protocol; receives from
    /// it fail with this error from now on.
    func connectionClosed(from rank: Int, failure: NodeError? = nil) {
        state.withLock { s in
            s.openFrom[rank, default: 1] -= 1
            if let failure, s.broken[rank] == nil { s.broken[rank] = failure }
            changes.add(1, ordering: .releasing)
        }
        failHopelessWaiters()
    }

    func peerExited(_ rank: Int, status: Int32) {
        state.withLock { s in
            s.exited[rank] = status
            changes.add(1, ordering: .releasing)
        }
        failHopelessWaiters()
    }

    func abort(_ reason: String) {
        state.withLock { s in
            if s.aborted == nil { s.aborted = reason }
            changes.add(1, ordering: .releasing)
        }
        failHopelessWaiters()
    }

    private func failHopelessWaiters() {
        let failed = state.withLock { s -> [(Waiter, NodeError)] in
            var out: [(Waiter, NodeError)] = []
            var keep: [Waiter] = []
            for waiter in s.waiters {
                if let error = Self.failure(s, source: waiter.source, selfRank: selfRank, count: count) {
                    out.append((waiter, error))
                } else {
                    keep.append(waiter)
                }
            }
            s.waiters = keep
            return out
        }
        for (waiter, error) in failed { waiter.continuation.resume(throwing: error) }
    }
}
