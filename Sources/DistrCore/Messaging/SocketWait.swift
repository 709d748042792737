import Synchronization

/// How a receive that reads plain socket connections itself (no shared-memory ring) passes the
/// time between reads: a short tight loop (the message is usually microseconds away), then sleeps
/// in the kernel on the sockets themselves for the rest of its budget. A sleeping reader is woken
/// by the data directly, one thread handoff fewer than parking until the progress thread
/// delivers it, and it leaves the core to whoever needs it.
///
/// How long the tight loop lasts is learned (`SocketSpin`): on a loaded machine spinning costs
/// more than it saves (a thread that burnt its share of the core is woken late by the
/// scheduler, and `sched_yield` hands the core to any other runnable process), so when messages
/// keep arriving only after the loop gave up, the loop shrinks to nothing and the receive sleeps
/// at once, as a blocking read would.
struct SocketWait {
    private let descriptors: [Int32]
    private let policy: SocketSpin
    private let spinSeconds: Double
    /// When the current stretch without bytes began, and whether the task slept in it.
    private var idleSince = 0.0
    private var slept = false

    /// Nil when a channel has a ring (its socket carries only doorbells), or when there are more
    /// channels than one wait watches (the caller spins as before).
    init?(_ channels: [IncomingChannel], policy: SocketSpin) {
        guard !channels.isEmpty, channels.count <= FD.maxWaitDescriptors, !channels.contains(where: { $0.hasRing }) else { return nil }
        descriptors = channels.map { $0.fd }
        self.policy = policy
        spinSeconds = policy.spinSeconds()
    }

    /// After `idle` reads in a row found nothing: pauses briefly, or sleeps until a socket has
    /// bytes (or its end), or `deadline` (`Clock.now` seconds) passes.
    mutating func pause(idle: Int, until deadline: Double) {
        let now = Clock.now
        if idle == 1 {
            idleSince = now
            slept = false
        }
        if now - idleSince < spinSeconds {
            SharedWord.pause()
            return
        }
        let left = deadline - now
        guard left > 0 else { return }
        slept = true
        // A failed wait ends the wait: the reads that follow meet the socket's error themselves.
        descriptors.withUnsafeBufferPointer { _ = try? FD.wait(for: $0, seconds: left) }  // See above.
    }

    /// The receive got its message (`caught`) or gave up: teaches the policy whether the spin paid.
    func finish(caught: Bool) {
        if spinSeconds > 0 { policy.record(caught: caught && !slept) }
    }
}

/// How long receives on plain sockets spin before they sleep (`SocketWait`), learned from how
/// their messages came. Spinning must prove itself: a spin that caught its message doubles the
/// next one (up to `maxSeconds`); one that did not (the message came only after the receive
/// slept) ends spinning, and every `probeEvery` receives one short spin looks again. On an idle
/// machine the messages of a ping-pong come within the spin, and it stays long; on a loaded one
/// most come later, and the receives sleep at once.
final class SocketSpin: Sendable {
    /// The longest spin: a round trip on an idle machine is well within it.
    static let maxSeconds = 40e-6
    /// The first spin after spinning stopped.
    static let probeSeconds = 10e-6
    /// Receives that sleep without spinning between two that try spinning again.
    static let probeEvery = 16

    private struct State {
        var seconds = SocketSpin.probeSeconds
        var sinceProbe = 0
    }

    private let state = Mutex(State())

    /// The spin for the next receive.
    func spinSeconds() -> Double {
        state.withLock { s in
            guard s.seconds == 0 else { return s.seconds }
            s.sinceProbe += 1
            if s.sinceProbe < Self.probeEvery { return 0 }
            s.sinceProbe = 0
            return Self.probeSeconds
        }
    }

    /// What a receive that spun saw: its message while spinning (`caught`), or only later.
    func record(caught: Bool) {
        state.withLock { s in s.seconds = caught ? min(Self.maxSeconds, max(s.seconds, Self.probeSeconds) * 2) : 0 }
    }
}
