@preconcurrency import Glibc
import Dispatch
import Synchronization

/// Delivers signals to a handler on a serial queue instead of in signal context: the signal is
/// ignored first (so the default action cannot fire), then watched with a dispatch source.
public enum Signals {
    /// Dispatch sources are not Sendable; they are only touched on `queue`.
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []
    private static let queue = DispatchQueue(label: "distr.signals")

    public static func watch(_ signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        for number in signals {
            signal(number, SIG_IGN)
            queue.sync {
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler { handler(number) }
                source.resume()
                sources.append(source)
            }
        }
    }

    /// SIGPIPE off: a closed peer is an EPIPE result, not a dead process. Spawned children get
    /// it back through POSIX_SPAWN_SETSIGDEF.
    public static func ignorePipe() { signal(SIGPIPE, SIG_IGN) }
}
