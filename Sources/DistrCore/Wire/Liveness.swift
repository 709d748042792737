/// How one end of a control connection watches the other, as a pure state machine over times
/// it is given (tests inject a clock; the threads pass `Clock.now`).
///
/// Both ends send a heartbeat every `interval` seconds and count any bytes from the peer as a
/// sign of life. A peer silent for `timeout` seconds has vanished, frozen or been cut off: the
/// watcher ends the connection. `TCP_USER_TIMEOUT` (set to the same value) covers the other
/// direction: data the peer does not acknowledge fails the sender's writes in that time.
package struct Liveness: Sendable, Equatable {
    /// The default for `--node-timeout` (master) and `--master-timeout` (worker).
    package static let defaultTimeout: Double = 5
    /// The shortest timeout either side accepts: a peer sends at least one heartbeat a second,
    /// so a shorter one would end healthy connections.
    package static let minimumTimeout: Double = 2

    package enum Verdict: Equatable, Sendable {
        /// Nothing to do until `until`.
        case wait(until: Double)
        case sendHeartbeat
        /// The peer has been silent for `silence` seconds, at least `timeout`.
        case expired(silence: Double)
    }

    package let timeout: Double
    package private(set) var lastHeard: Double
    package private(set) var lastSent: Double
    /// Unread bytes in the socket at the last look (see `observe(pendingBytes:at:)`).
    package private(set) var lastPending = 0

    package init(timeout: Double, now: Double) {
        self.timeout = timeout
        lastHeard = now
        lastSent = now
    }

    /// Seconds between heartbeats: one a second, more often for short timeouts, so that the
    /// peer's timeout sees several.
    package var interval: Double { min(1, timeout / 4) }

    /// When the peer's silence becomes fatal, unless something arrives first.
    package var deadline: Double { lastHeard + timeout }

    /// Bytes (a heartbeat or anything else) arrived from the peer.
    package mutating func heard(at now: Double) { lastHeard = max(lastHeard, now) }

    /// The number of bytes waiting unread in the socket: more than at the last look means the
    /// peer spoke, even while the reading thread is busy (a master streaming a large file to a
    /// worker that hashes it reads nothing meanwhile, yet the worker's heartbeats arrive).
    package mutating func observe(pendingBytes: Int, at now: Double) {
        if pendingBytes > lastPending { heard(at: now) }
        lastPending = pendingBytes
    }

    /// A heartbeat (or any frame) went out.
    package mutating func sent(at now: Double) { lastSent = max(lastSent, now) }

    /// What the watcher thread does now.
    package func check(at now: Double) -> Verdict {
        if now - lastHeard >= timeout { return .expired(silence: now - lastHeard) }
        if now - lastSent >= interval { return .sendHeartbeat }
        return .wait(until: min(lastSent + interval, deadline))
    }

    /// "no heartbeat for 5.0 s", one decimal.
    package static func describeSilence(_ seconds: Double) -> String {
        let tenths = Int((seconds * 10).rounded())
        return "no heartbeat for \(tenths / 10).\(tenths % 10) s"
    }
}
