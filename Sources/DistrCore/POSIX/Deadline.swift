@preconcurrency import Glibc
import Dispatch
import Synchronization

/// A point in monotonic time by which something must be done: the one way distr bounds a
/// wait. A time limit covers a whole exchange, so code takes a deadline once and polls with the
/// time left, instead of giving each `read` its own timeout.
package struct Deadline: Sendable, Comparable {
    /// Monotonic seconds (`Clock.now`); infinity for `never`.
    package let instant: Double

    package init(instant: Double) { self.instant = instant }

    /// `seconds` from now.
    package static func after(_ seconds: Double) -> Deadline { Deadline(instant: Clock.now + seconds) }

    package static let never = Deadline(instant: .infinity)

    package var remaining: Double { max(0, instant - Clock.now) }

    /// Blocks the calling thread for `seconds` (a retry back-off, not a wait for readiness).
    /// The corresponding C function is `nanosleep`.
    package static func pause(_ seconds: Double) {
        let deadline = Deadline.after(seconds)
        while !deadline.hasPassed {
            let left = deadline.remaining
            var request = timespec(tv_sec: Int(left), tv_nsec: Int((left - Double(Int(left))) * 1e9))
            // Interrupted by a signal: the loop sleeps the rest.
            _ = nanosleep(&request, nil)
        }
    }
    package var hasPassed: Bool { Clock.now >= instant }

    /// The time left as a `poll` timeout: -1 for never, else milliseconds rounded up.
    package var pollTimeout: Int32 {
        if instant == .infinity { return -1 }
        return Int32(min(Double(Int32.max), (remaining * 1000).rounded(.up)))
    }

    package static func < (a: Deadline, b: Deadline) -> Bool { a.instant < b.instant }
}

/// A one-way gate: closed until `open()`, then open for ever; any number of threads wait on it.
package final class Latch: Sendable {
    private let isOpenFlag = Atomic<Bool>(false)
    private let semaphore = DispatchSemaphore(value: 0)

    package init() {}

    package var isOpen: Bool { isOpenFlag.load(ordering: .acquiring) }

    /// Opens the gate (later calls do nothing).
    package func open() {
        if !isOpenFlag.exchange(true, ordering: .acquiringAndReleasing) { semaphore.signal() }
    }

    /// Waits until the gate is open or the deadline passes; true when open.
    @discardableResult
    package func wait(until deadline: Deadline = .never) -> Bool {
        if isOpen { return true }
        let result: DispatchTimeoutResult
        if deadline.instant == .infinity {
            semaphore.wait()
            result = .success
        } else {
            result = semaphore.wait(timeout: .now() + deadline.remaining)
        }
        // Each waiter that got through passes the one signal on to the next.
        if result == .success { semaphore.signal() }
        return result == .success
    }
}
