@preconcurrency import Glibc
import Synchronization

/// Termination signals, taken synchronously: blocked in every thread and collected by one thread
/// with `sigwait`, so none is lost however early it arrives.
///
/// Ignoring a signal and arming a dispatch source later loses any signal that arrives in between
/// (the source is armed asynchronously). A blocked signal instead stays pending until the
/// waiting thread takes it.
package enum Signals {
    /// Blocks `signals` in the calling thread. Call it first thing in `main`, before any thread
    /// exists: threads inherit the mask. Spawned children get an empty mask back (the spawner
    /// sets it). The corresponding C function is `pthread_sigmask`.
    package static func block(_ signals: [Signal]) {
        var set = signalSet(signals)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Starts one thread that takes `signals` (which must be blocked, see `block`) and calls
    /// `handler` for each, in order of arrival. The corresponding C function is `sigwait`.
    package static func handle(_ signals: [Signal], handler: @escaping @Sendable (Signal) -> Void) {
        let set = signalSet(signals)
        Threads.start(name: "distr-signals") {
            var waited = set
            while true {
                var number: Int32 = 0
                // sigwait returns an error number (never EINTR) only for an invalid set. The
                // handler runs under `handling`, which `settle` waits for.
                if sigwait(&waited, &number) == 0 { handling.withLock { _ in handler(Signal(rawValue: number)) } }
            }
        }
    }

    private static let handling = Mutex(())

    /// Settles every `signal` that arrived before this call: takes one still pending (not yet
    /// taken by the thread of `handle`) and returns true, or waits until the handler of one
    /// already taken has returned. So whatever the caller does next is not what such a signal
    /// acts on (the remote shell: a Ctrl-C typed while no command ran must not end the next
    /// one, however late the signal thread runs). The corresponding C function is `sigtimedwait`.
    package static func settle(_ signal: Signal) -> Bool {
        var set = signalSet([signal])
        var now = timespec(tv_sec: 0, tv_nsec: 0)
        let taken = sigtimedwait(&set, nil, &now) == signal.rawValue
        handling.withLock { _ in }
        return taken
    }

    /// SIGPIPE off: a closed peer is an EPIPE result, not a dead process. Spawned children get
    /// it back through POSIX_SPAWN_SETSIGDEF.
    package static func ignorePipe() { signal(SIGPIPE, SIG_IGN) }

    /// SIGPIPE off unless the program installed a handler of its own: a rank's write to a rank
    /// that has gone is then an EPIPE error that names it, not the end of the process (Python
    /// ignores SIGPIPE at start for the same reason). Programs the rank starts inherit the
    /// ignored signal, as Python's children do unless they reset it.
    package static func ignorePipeUnlessHandled() {
        let previous = signal(SIGPIPE, SIG_IGN)
        // nil is SIG_DFL; anything else (a handler, SIG_IGN) is the program's choice: put it back.
        if previous != nil { signal(SIGPIPE, previous) }
    }

    /// SIGHUP off for this process (and what it starts: an ignored signal stays ignored).
    package static func ignoreHangup() { signal(SIGHUP, SIG_IGN) }

    private static func signalSet(_ signals: [Signal]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal.rawValue) }
        return set
    }
}
