/// Whether a receive reads its connections itself for a while before it parks (docs/messages.md,
/// "Waiting"). Spinning saves the thread handoff when the message is about to arrive, but only
/// while it pays: a spinning rank takes a core that another rank of the job may need.
///
/// - Never when this worker runs more ranks of the job than this process may use cores
///   (oversubscribed: the sender may need this very core), or when `DISTR_SPIN_USEC` is 0.
/// - Not while more threads are runnable on the machine than it has cores (two samples in a row,
///   taken every `sampleInterval` seconds from /proc/loadavg): another program keeps a core busy,
///   and a spinning rank would take the time its peer needs.
/// - After `missesBeforeBackoff` spins in a row that ended without the message (it came later
///   from a rank busy computing), the next `backoffReceives` receives park at once; then one
///   spin probes again.
struct SpinPolicy: Sendable {
    static let missesBeforeBackoff = 3
    static let backoffReceives = 32
    static let sampleInterval = 0.02

    /// Seconds of idle spinning per receive (0: never spin).
    let budget: Double
    let cores: Int
    private var misses = 0
    private var skipping = 0
    private var crowdedSamples = 0
    private var nextSample = -Double.infinity

    init(budget: Double, localRanks: Int, cores: Int) {
        self.budget = localRanks > cores ? 0 : budget
        self.cores = cores
    }

    /// Whether this receive spins (call once per receive that found nothing queued). `now` is
    /// the clock in seconds; `runnable` counts the machine's runnable threads (nil: unknown).
    mutating func shouldSpin(now: Double = Clock.now, runnable: () -> Int? = { SystemFacts.runnableThreads }) -> Bool {
        guard budget > 0 else { return false }
        if now >= nextSample {
            nextSample = now + Self.sampleInterval
            // Two samples in a row: this rank and a spinning peer are runnable themselves, and a
            // thread that runs for a moment (an output relay, a heartbeat) must not stop the spin.
            crowdedSamples = (runnable() ?? 0) > cores ? crowdedSamples + 1 : 0
        }
        if crowdedSamples >= 2 { return false }
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
