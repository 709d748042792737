/// How a receive that found nothing queued waits on its own thread before it parks
/// (docs/messages.md, "Waiting"). Catching the message on the receiving thread saves the hand-over
/// from the progress thread, but each way of waiting costs something, so each is used only while
/// it pays:
///
/// - Spinning (reading the connections in a loop) is the fastest, and takes a core. When this
///   worker runs more ranks of the job than this process may use cores (oversubscribed: the
///   sender may need this very core), only over rings and handing the core over at every turn
///   (`sched_yield`, as Open MPI does when oversubscribed): the ranks that wait pass the cores
///   round among themselves, and the one with something to send gets a core within a few
///   turns, without the wake-ups of sleeping (4 ranks on 2 cores: a barrier 25-38 -> 7 µs).
///   Such a spin reads the clock at every turn: a yield may hand the core to a rank that
///   computes, and the budget is wall time.
///   Never while the machine has more runnable threads than cores, or than this job's ranks on
///   the worker when those are more (other programs load it: looked at every `lookInterval`,
///   and taken as loaded when two looks in a row saw it so), nor when `DISTR_SPIN_USEC` is 0.
/// - Sleeping on a shared-memory ring's futex word (a receive from one given rank on the same
///   worker, the only way its messages can come) takes no core: the sender's write wakes this
///   thread directly, one wake-up like a blocking socket read. It follows the spin (or replaces
///   it when spinning is off), for at most `sleepLimit` seconds; the thread is one of Swift's
///   cooperative pool, held as long as a spin would hold it, but without using the core.
/// - After `missesBeforeBackoff` receives in a row that a way of waiting did not deliver, the
///   next `backoffReceives` receives skip it; then one probes it again.
struct SpinPolicy: Sendable {
    static let missesBeforeBackoff = 8
    static let backoffReceives = 32
    /// The longest a receive sleeps on a ring before it parks (seconds). Long enough to outlast
    /// a peer waiting for a time slice on a loaded machine (a sleep that ends unserved costs two
    /// hand-overs more than a blocking read: measured 1.25-1.5x a blocking socket with 10 ms,
    /// 1.6-2.7x with 1 ms, under a busy loop on every core), short enough that an abort or a
    /// cancelled task is noticed promptly.
    static let sleepLimit = 10e-3
    /// How often the machine's runnable threads are counted (seconds).
    static let lookInterval = 0.01

    /// What delivered the message of one receive that waited.
    enum Outcome: Equatable {
        /// The spin.
        case spun
        /// The sleep on the ring that followed (or replaced) it.
        case slept
        /// Neither: the receive parked.
        case missed
    }

    /// One way of waiting, with its run of misses.
    private struct Habit {
        var misses = 0
        var skipping = 0

        mutating func allowed() -> Bool {
            guard skipping == 0 else {
                skipping -= 1
                return false
            }
            return true
        }

        mutating func record(paid: Bool) {
            guard !paid else {
                misses = 0
                return
            }
            misses += 1
            if misses >= SpinPolicy.missesBeforeBackoff {
                misses = 0
                skipping = SpinPolicy.backoffReceives
            }
        }
    }

    /// Seconds of idle spinning per receive (0: never spin).
    let budget: Double
    /// Seconds a send spins while a socket or ring is full (0 when ranks outnumber the cores: the
    /// receiver may need this very core to empty it).
    var sendBudget: Double { yields ? 0 : budget }
    /// Seconds a receive from a ring may sleep on it (0: never).
    let sleepBudget: Double
    /// This worker runs more ranks of the job than the rank may use cores: a spin is allowed only
    /// over rings, and hands the core over at every turn (`sched_yield`), so that a rank that has
    /// something to send gets it at once.
    let yields: Bool
    private let cores: Int
    /// Runnable threads above which the machine is loaded by others: the cores, or this job's
    /// ranks on the worker when they outnumber the cores (each of them may be spinning).
    private let crowd: Int
    private var spinning = Habit()
    private var sleeping = Habit()
    private var lookedAt = -Double.infinity
    private var crowded = false
    /// What the last look saw. One look is not enough: two ranks spinning on a 2-core machine
    /// are already 2 runnable threads, and any short-lived third one (a kernel worker, a
    /// progress thread's tick) made a single look say "crowded" and end spinning for the next
    /// `lookInterval` (measured: 1-3 % of an 8 B ping-pong's receives across workers).
    private var overAtLastLook = false

    init(budget: Double, localRanks: Int, cores: Int) {
        self.budget = budget
        sleepBudget = budget > 0 ? Self.sleepLimit : 0
        yields = localRanks > cores
        self.cores = cores
        crowd = max(cores, localRanks)
    }

    /// How long this receive spins, then sleeps on its ring (`canSleep`: it waits for one ring);
    /// call once per receive that found nothing queued, and `record` what came of it. `runnable`
    /// counts the machine's runnable threads (nil: unknown), called at most every `lookInterval`.
    mutating func plan(
        canSleep: Bool, onlyRings: Bool = true, now: Double = Clock.now, runnable: () -> Int? = { SystemFacts.runnableThreads }
    ) -> (spin: Double, sleep: Double) {
        if budget > 0 && now - lookedAt >= Self.lookInterval {
            lookedAt = now
            let over = (runnable() ?? 0) > crowd
            crowded = over && overAtLastLook
            overAtLastLook = over
        }
        let spin = budget > 0 && !crowded && (onlyRings || !yields) && spinning.allowed() ? budget : 0
        let sleep = canSleep && sleepBudget > 0 && sleeping.allowed() ? sleepBudget : 0
        return (spin, sleep)
    }

    /// What the waiting of a receive planned with `plan` ended with.
    mutating func record(_ outcome: Outcome, planned: (spin: Double, sleep: Double)) {
        if planned.spin > 0 { spinning.record(paid: outcome == .spun) }
        if planned.sleep > 0 && outcome != .spun { sleeping.record(paid: outcome == .slept) }
    }
}
