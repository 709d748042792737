import Dispatch
import Synchronization

/// The one thread of a process that keeps the heartbeats of all its watched connections
/// (`Connection.watch`): it sends each connection's heartbeat when due and breaks a connection
/// whose peer has been silent too long, then sleeps until the next of those times.
///
/// A thread per connection did the same, and cost a master two threads per worker with the
/// serve thread (four heartbeat threads made at every 4-worker launch, 64 on 64 workers) and a
/// worker a hand-over per job. One thread must never wait on one peer: a heartbeat is written
/// only when the write cannot wait (`Connection.heartbeatTurn`), and a connection that is busy
/// writing (its send lock held, or its socket full) is looked at again shortly: the bytes already
/// on their way reach the peer first, and count as life there as a heartbeat would.
///
/// The thread starts with the first watched connection and ends when none is left.
final class HeartbeatThread: Sendable {
    static let shared = HeartbeatThread()

    /// A watched connection, held weakly: a connection its owners have let go of is freed at
    /// once, as it was when its own heartbeat thread ended with it (held strongly until the
    /// thread's next look, a second's worth of jobs' connections stayed in memory: a worker's
    /// resident memory after 1,000 quick jobs grew from 9.9 to 15.8 MB).
    private struct Watched {
        weak var connection: Connection?
        let type: UInt8
        /// When the thread looks at it next (what its last look said, or its first heartbeat's
        /// time): a wake looks only at the connections due by then, not at all of them (which
        /// cost a worker with hundreds of jobs a look at each of them for every heartbeat).
        var due: Double
    }

    private struct State {
        var watched: [Watched] = []
        var running = false
        /// When the thread wakes by itself next (infinity while it is not waiting on a time).
        var wakeAt = Double.infinity
        /// Connections added so far: one added while the thread looked at the others is looked
        /// at before the thread sleeps.
        var added = 0
        /// The thread waits (for `wakeAt` or a signal) and looks at nothing meanwhile.
        var sleeping = false
    }

    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    /// Threads started so far (one at a time).
    let threadsStarted = Atomic<Int>(0)

    init() {}

    /// Connections being watched now (ended ones leave at the thread's next look).
    var count: Int { state.withLock { $0.watched.count } }

    /// Whether the thread is waiting for its next time (for tests).
    var isSleeping: Bool { state.withLock { $0.sleeping } }

    /// How much earlier than its time a connection is looked at when the thread is awake anyway:
    /// heartbeats due within it go out together, one wake for several connections.
    static let slack = 0.005

    /// Watches `connection` from now on, sending heartbeats of `type`.
    func add(_ connection: Connection, type: UInt8, firstDue: Double) {
        let (start, signal) = state.withLock { s -> (Bool, Bool) in
            s.watched.append(Watched(connection: connection, type: type, due: firstDue))
            s.added += 1
            if !s.running {
                s.running = true
                return (true, false)
            }
            // The thread is waiting for a later time, or about to decide how long to wait.
            return (false, firstDue < s.wakeAt)
        }
        if start {
            threadsStarted.add(1, ordering: .relaxed)
            Threads.start(name: "distr-heartbeat") { [self] in run() }
        } else if signal {
            wake.signal()
        }
    }

    private func run() {
        while true {
            let (list, generation) = state.withLock { s in
                s.sleeping = false
                return (s.watched, s.added)
            }
            let horizon = Clock.now + Self.slack
            // What each look said, by connection; held until the list is updated, so that a
            // freed connection's address cannot be a new one's by then.
            var looked: [(connection: Connection, due: Double?)] = []
            for item in list where item.due <= horizon {
                guard let connection = item.connection else { continue }
                looked.append((connection, connection.heartbeatTurn(type: item.type)))
            }
            let (stop, look, next) = state.withLock { s -> (Bool, Bool, Double) in
                var next = Double.infinity
                var kept: [Watched] = []
                kept.reserveCapacity(s.watched.count)
                for var item in s.watched {
                    guard let live = item.connection else { continue }
                    if let entry = looked.first(where: { $0.connection === live }) {
                        guard let due = entry.due else { continue }
                        item.due = due
                    }
                    next = min(next, item.due)
                    kept.append(item)
                }
                s.watched = kept
                if s.watched.isEmpty {
                    s.running = false
                    s.wakeAt = .infinity
                    return (true, false, next)
                }
                s.wakeAt = next
                let look = s.added != generation
                s.sleeping = !look
                return (false, look, next)
            }
            if stop { return }
            if look { continue }
            let wait = next - Clock.now
            // A signal for a connection added meanwhile ends the wait early; one left over from
            // an earlier add only costs a look.
            if wait > 0 { _ = wake.wait(timeout: .now() + wait) }
        }
    }
}
