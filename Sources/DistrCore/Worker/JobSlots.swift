/// Who may run a job on this worker now (`distr-worker --max-jobs N`), as a pure state machine.
///
/// A job over the bound waits, first come first served; it is not refused. A request that
/// leaves while waiting (its master gave up) is released like a held slot.
package struct JobSlots: Sendable, Equatable {
    package enum Admission: Sendable, Equatable {
        case granted
        /// Wait: `running` jobs hold the slots, started by the masters at `holders`.
        case queued(running: Int, holders: [String])
    }

    /// nil: no bound.
    package let limit: Int?
    /// Holders in the order they were granted: (request id, master address).
    package private(set) var holders: [(id: UInt64, master: String)] = []
    private var waiting: [(id: UInt64, master: String)] = []

    package init(limit: Int?) { self.limit = limit }

    package var running: Int { holders.count }

    package mutating func request(id: UInt64, master: String) -> Admission {
        if let limit, holders.count >= limit {
            waiting.append((id, master))
            return .queued(running: holders.count, holders: holders.map(\.master))
        }
        holders.append((id, master))
        return .granted
    }

    /// Gives back `id`'s slot (or its place in the queue); returns the requests granted now.
    package mutating func release(id: UInt64) -> [UInt64] {
        waiting.removeAll { $0.id == id }
        holders.removeAll { $0.id == id }
        var granted: [UInt64] = []
        while let next = waiting.first, limit.map({ holders.count < $0 }) ?? true {
            waiting.removeFirst()
            holders.append(next)
            granted.append(next.id)
        }
        return granted
    }

    package static func == (a: JobSlots, b: JobSlots) -> Bool {
        a.limit == b.limit && a.holders.map(\.id) == b.holders.map(\.id) && a.waiting.map(\.id) == b.waiting.map(\.id)
    }
}
