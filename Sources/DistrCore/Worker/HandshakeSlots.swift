/// Who may hold one of the worker's handshake slots. Pure bookkeeping (no sockets, no clock):
/// the worker asks before it starts a thread for an accepted connection.
///
/// The rules keep a few slow or hostile clients from locking everyone out:
/// - every handshake has one deadline for all of it (enforced by the caller), so a slot is
///   held for at most that long;
/// - one address may hold at most `perSource` slots; more from it are refused as busy;
/// - when all `capacity` slots are taken, a newcomer takes the slot of the oldest handshake of
///   the address holding the most (a legitimate handshake takes milliseconds, so the oldest is
///   almost surely a stalled one);
/// - addresses of running jobs' nodes and masters (`trusted`) are not held to `perSource` and
///   are never displaced by other addresses: rank connections of a live job come in bursts
///   from a few hosts, and strangers must not starve them.
package struct HandshakeSlots: Sendable {
    package enum Admission: Equatable, Sendable {
        /// Go ahead; if `displacing` is set, end that handshake first.
        case admitted(ticket: UInt64, displacing: UInt64?)
        /// Turn the connection away as busy, for this reason.
        case refused(String)
    }

    private struct Holder {
        var source: String
        var trusted: Bool
        var order: UInt64
    }

    package let capacity: Int
    package let perSource: Int
    private var holders: [UInt64: Holder] = [:]
    private var countBySource: [String: Int] = [:]
    private var nextTicket: UInt64 = 0

    package init(capacity: Int, perSource: Int) {
        self.capacity = max(1, capacity)
        self.perSource = max(1, perSource)
    }

    package var count: Int { holders.count }

    package mutating func admit(source: String, trusted: Bool) -> Admission {
        let fromSource = countBySource[source, default: 0]
        if !trusted && fromSource >= perSource {
            return .refused("\(fromSource) connections from \(source) are already in their handshake (limit \(perSource))")
        }
        var displaced: UInt64?
        if holders.count >= capacity {
            guard let victim = victim(for: source, trusted: trusted) else {
                return .refused("all \(capacity) handshake slots are held by the nodes of running jobs")
            }
            release(victim)
            displaced = victim
        }
        let ticket = nextTicket
        nextTicket += 1
        holders[ticket] = Holder(source: source, trusted: trusted, order: ticket)
        countBySource[source, default: 0] += 1
        return .admitted(ticket: ticket, displacing: displaced)
    }

    /// The handshake has ended (done, failed or displaced). Unknown tickets are ignored.
    package mutating func release(_ ticket: UInt64) {
        guard let holder = holders.removeValue(forKey: ticket) else { return }
        let left = countBySource[holder.source, default: 1] - 1
        countBySource[holder.source] = left > 0 ? left : nil
    }

    /// The oldest handshake of the untrusted address holding the most slots; a trusted
    /// newcomer may also displace the oldest of a trusted address when no stranger holds one.
    private func victim(for source: String, trusted: Bool) -> UInt64? {
        let strangers = holders.filter { !$0.value.trusted }
        let pool = strangers.isEmpty && trusted ? holders : strangers
        guard !pool.isEmpty else { return nil }
        var perSourceCount: [String: Int] = [:]
        for holder in pool.values { perSourceCount[holder.source, default: 0] += 1 }
        let busiest = perSourceCount.max { a, b in a.value < b.value || (a.value == b.value && a.key > b.key) }?.key
        return pool.filter { $0.value.source == busiest }.min { $0.value.order < $1.value.order }?.key
    }
}

/// Keeps a flood of refused connections from flooding the log: at most `burst` lines per
/// `interval` seconds, then one line saying how many were left out. Pure: the caller passes
/// the time.
package struct LogRateLimiter: Sendable {
    package let burst: Int
    package let interval: Double
    private var windowStart = -Double.infinity
    private var logged = 0
    private var suppressed = 0

    package init(burst: Int, interval: Double) {
        self.burst = burst
        self.interval = interval
    }

    /// The lines to write for one event at `now`: the event's own line (when within the
    /// budget), preceded by a count of what the previous window left out.
    package mutating func lines(for line: String, now: Double) -> [String] {
        var out: [String] = []
        if now - windowStart >= interval {
            if suppressed > 0 {
                out.append("\(suppressed) more refused connection(s) not logged in the last \(Int(interval)) s")
            }
            windowStart = now
            logged = 0
            suppressed = 0
        }
        if logged < burst {
            logged += 1
            out.append(line)
        } else {
            suppressed += 1
        }
        return out
    }
}
