import Synchronization

/// How a receive that reads plain socket connections itself (no shared-memory ring) passes the
/// time between reads: a short tight loop (the message is usually microseconds away), then sleeps
/// in the kernel on the sockets themselves for the rest of its budget. A sleeping reader is woken
/// by the data directly, one thread handoff fewer than parking until the progress thread
/// delivers it, and it leaves the core to whoever needs it.
///
/// On a loaded machine spinning costs more than it saves (a thread that burnt its share of the
/// core is woken late by the scheduler, and `sched_yield` hands the core to any other runnable
/// process): there is no tight loop while `SpinPolicy` plans none (more runnable threads than
/// cores), and the receive sleeps at once, as a blocking read would. Otherwise the loop's
/// length is learned (`SocketSpin`): when messages keep arriving only after it gave up, it
/// stops, and probes again now and then.
struct SocketWait {
    /// The socket, when the receive reads one (no array is made for it), and otherwise all of them.
    private let only: Int32
    private let descriptors: [Int32]
    private let policy: SocketSpin
    /// This receive's tight loop (0: none).
    let spinSeconds: Double
    /// When the current stretch without bytes began, and whether the task slept in it.
    private var idleSince = 0.0
    private var slept = false
    /// Bytes have come during this receive: from then on it sleeps whenever the sockets are
    /// empty. The rest of a large payload comes as fast as the kernel moves it, and a spin would
    /// only take the core the kernel or the sender needs for that (a blocking read sleeps there
    /// too); the policy learns only from the wait for the first bytes.
    private var flowing = false

    /// Nil when a channel has a ring (its socket carries only doorbells), or when there are more
    /// channels than one wait watches (the caller spins as before). `spinning` false: no tight
    /// loop at all (the policy is neither asked nor taught).
    init?(_ channels: some Collection<IncomingChannel>, policy: SocketSpin, spinning: Bool) {
        guard let first = channels.first, channels.count <= FD.maxWaitDescriptors, !channels.contains(where: { $0.hasRing }) else { return nil }
        only = first.fd
        descriptors = channels.count == 1 ? [] : channels.map { $0.fd }
        self.policy = policy
        spinSeconds = spinning ? policy.spinSeconds() : 0
        waitsFirst = spinSeconds == 0 && policy.waitsFirst()
    }

    /// This receive sleeps before its first read (`SocketSpin.waitsFirst`): it has no tight loop,
    /// and the last receives' first reads found nothing. The read would cost a system call that
    /// only says "not yet"; a message already there ends the wait at once.
    let waitsFirst: Bool

    /// Sleeps before the first read when `waitsFirst`.
    mutating func waitBeforeFirstRead(until deadline: Double) {
        guard waitsFirst else { return }
        pause(idle: 1, until: deadline)
    }

    /// What the first read of a receive that did not wait first found (`bytes`: something): teaches
    /// the policy whether the next such receive should wait first.
    func firstRead(found bytes: Bool) {
        if spinSeconds == 0 && !waitsFirst { policy.recordFirstRead(found: bytes) }
    }

    /// After `idle` reads in a row found nothing: pauses briefly, or sleeps until a socket has
    /// bytes (or its end), or `deadline` (`Clock.now` seconds) passes.
    mutating func pause(idle: Int, until deadline: Double) {
        let now = Clock.now
        if idle == 1 && !flowing {
            idleSince = now
            slept = false
        }
        if !flowing && now - idleSince < spinSeconds {
            SharedWord.pause()
            return
        }
        let left = deadline - now
        guard left > 0 else { return }
        if !flowing { slept = true }
        // A failed wait ends the wait: the reads that follow meet the socket's error themselves.
        if descriptors.isEmpty {
            withUnsafePointer(to: only) { _ = try? FD.wait(for: UnsafeBufferPointer(start: $0, count: 1), seconds: left) }  // See above.
        } else {
            descriptors.withUnsafeBufferPointer { _ = try? FD.wait(for: $0, seconds: left) }  // See above.
        }
    }

    /// A read moved bytes (`flowing`).
    mutating func bytesCame() { flowing = true }

    /// The receive got its message (`caught`) or gave up: teaches the policy whether the spin paid.
    func finish(caught: Bool) {
        if spinSeconds > 0 { policy.record(caught: caught && !slept) }
    }
}

/// How long receives on plain sockets spin before they sleep (`SocketWait`), learned from how
/// their messages came: a spin that caught its message keeps spinning; one that did not (the
/// message came only after the receive slept) ends spinning, and every `probeEvery` receives one
/// spin looks again.
///
/// One miss after a long run of catches (`trustedRun`) does not end spinning: on a machine whose
/// cores are free, that is a round trip the scheduler or an interrupt held up once (measured: 1.5
/// to 6 receives in 1,000 of an 8 B ping-pong across workers), and ending spinning for it cost the
/// next `probeEvery` receives a sleep each, 2-6 % of all receives. A second miss in a row ends it.
///
/// The probe is as long as a full spin. Its message is the answer of a peer that does not spin
/// either: that peer sleeps, and its wake-up is part of the wait (a blocking round trip, about
/// 20-45 µs on loopback TCP for 8 B to 64 KiB). A shorter probe could never catch it, and two
/// ranks that once stopped spinning would never start again (measured: 8 B across workers at
/// the blocking socket's 11 µs while cores were free and busy-polling took 5 µs).
final class SocketSpin: Sendable {
    /// The spin: a blocking round trip on an idle machine is within it.
    static let maxSeconds = 50e-6
    /// The spin of a probe after spinning stopped.
    static let probeSeconds = maxSeconds
    /// Receives that sleep without spinning between two that try spinning again.
    static let probeEvery = 16
    /// Catches in a row after which one miss is forgiven.
    static let trustedRun = 64

    private struct State {
        var seconds = SocketSpin.maxSeconds
        var sinceProbe = 0
        /// Spins in a row that caught their message.
        var caughtInARow = 0
        /// Receives without a tight loop sleep before their first read.
        var waitFirst = false
        var sinceReadFirst = 0
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
        state.withLock { s in
            if caught {
                s.seconds = Self.maxSeconds
                s.caughtInARow += 1
                return
            }
            if s.caughtInARow < Self.trustedRun { s.seconds = 0 }
            s.caughtInARow = 0
        }
    }

    /// Whether a receive without a tight loop sleeps before its first read. Yes while the first
    /// reads of such receives found nothing (a ping-pong: the answer is not there yet when the
    /// receive begins, and a blocking read would go to sleep at once, where distr's read costs a
    /// system call before its `ppoll`); but every `probeEvery`th reads first, so that messages
    /// that are already waiting (a stream) turn it off again.
    func waitsFirst() -> Bool {
        state.withLock { s in
            guard s.waitFirst else { return false }
            s.sinceReadFirst += 1
            if s.sinceReadFirst < Self.probeEvery { return true }
            s.sinceReadFirst = 0
            return false
        }
    }

    /// What the first read of a receive without a tight loop found, when it read before waiting.
    func recordFirstRead(found bytes: Bool) {
        state.withLock { s in s.waitFirst = !bytes }
    }
}
