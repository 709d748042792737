/// Whether a receive reads its connections itself for a while before it parks (docs/messages.md,
/// "Waiting"). Spinning saves the thread handoff when the message is about to arrive, but only
/// while it pays: a spinning rank takes a core that another rank of the job may need.
///
/// - Never when this worker runs more ranks of the job than this process may use cores
///   (oversubscribed: the sender may need this very core), or when `DISTR_SPIN_USEC` is 0.
/// - After `missesBeforeBackoff` spins in a row that ended without the message (it came later
///   from a rank busy computing), the next `backoffReceives` receives park at once; then one
///   spin probes again.
struct SpinPolicy: Sendable {
    static let missesBeforeBackoff = 8
    static let backoffReceives = 32

    /// Seconds of idle spinning per receive (0: never spin).
    let budget: Double
    private var misses = 0
    private var skipping = 0

    init(budget: Double, localRanks: Int, cores: Int) {
        self.budget = localRanks > cores ? 0 : budget
    }

    /// Whether this receive spins (call once per receive that found nothing queued).
    mutating func shouldSpin() -> Bool {
        guard budget > 0 else { return false }
        if skipping > 0 {
            skipping -= 1
            return false
        }
        return true
    }

    /// What the spin ended with: the message (`paid`), or parking.
    mutating func record(paid: Bool) {
        if paid {
            misses = 0
            return
        }
        misses += 1
        if misses >= Self.missesBeforeBackoff {
            misses = 0
            skipping = Self.backoffReceives
        }
    }
}
