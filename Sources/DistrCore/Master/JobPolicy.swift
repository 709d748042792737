/// What the master decides about a running job, as a pure reducer: events from the workers
/// (and from the user and the clock) in, actions out. It holds every rank's fate and every
/// worker's state; the summary and the exit status are read from it at the end.
package struct JobPolicy: Sendable {
    package struct RankRecord: Sendable, Equatable {
        package var status: RankStatus?
        package var endedByDistr = false
        /// The last `tailLines` lines of the rank's stderr, and how many lines it wrote in all.
        package var stderrTail: [[UInt8]] = []
        package var stderrLineCount = 0
        package var partialStderr: [UInt8] = []
    }

    package enum Action: Equatable, Sendable {
        /// Every worker is ready: launch the ranks everywhere.
        case launchAll
        case cancelAll(reason: String)
        /// Tell workers `to` that `rank` exited with `code`: every worker but the rank's own
        /// that still runs a rank (relaying every exit to every worker is a message per pair of
        /// nodes, 64 × 63 of them on 64 nodes, for ranks that have mostly ended).
        case relayExit(rank: Int, code: Int32, to: [Int])
        /// Clean exits are being held (see `holdsCleanExits`): call `releaseHeldExits` after
        /// `cleanExitHold` seconds.
        case releaseExitsLater
        /// Every worker is done.
        case allFinished
    }

    /// Enough for a Python traceback of several frames (two lines each) to show whole.
    static let tailLines = 20
    package let workerCount: Int
    package let failFast: Bool
    package private(set) var ranks: [Int: RankRecord] = [:]
    package private(set) var readyWorkers = Set<Int>()
    package private(set) var finishedWorkers = Set<Int>()
    package private(set) var workerErrors: [Int: String] = [:]
    package private(set) var keptDirectories: [Int: String] = [:]
    package private(set) var firstFailure: Int?
    package private(set) var cancelReason: String?
    package private(set) var launched = false
    /// `launchAll` is being carried out (until `launchSent`): a cancel waits for it, so that
    /// every worker is launched before any is cancelled. Otherwise the first rank that fails to
    /// start (fail-fast) could cancel the workers not launched yet, whose ranks would then
    /// never try: the summary would name fewer ranks that could not start than there are.
    package private(set) var launching = false

    /// Each worker's ranks: when a worker is lost after launch, the others are told its ranks
    /// are gone, so that nothing waits for them until the time limit.
    package let ranksOfWorker: [Int: [Int]]
    /// The status relayed for a rank whose worker was lost (its real status is unknown).
    package static let lostRankCode: Int32 = 255

    /// Whether exits with status 0 wait up to `cleanExitHold` before they are relayed. Ranks of
    /// a job mostly end together: by the time the held exits go out, most workers have no rank
    /// left to tell, and `exec true` on 64 workers sends a few relays instead of about 2,000
    /// (each a write, a wake-up and a MAC check on a worker). Only a receive that waits for a
    /// rank that ended cleanly without sending learns of it later; failures go out at once.
    package let holdsCleanExits: Bool
    /// Clean exits waiting to be relayed, in the order they were seen.
    package private(set) var heldExits: [(rank: Int, worker: Int)] = []
    /// How long a clean exit is held, in seconds.
    package static let cleanExitHold = 0.05

    package init(workerCount: Int, failFast: Bool, ranksOfWorker: [Int: [Int]] = [:], holdsCleanExits: Bool = false) {
        self.workerCount = workerCount
        self.failFast = failFast
        self.ranksOfWorker = ranksOfWorker
        self.holdsCleanExits = holdsCleanExits
    }

    package mutating func workerReady(_ worker: Int) -> [Action] {
        readyWorkers.insert(worker)
        guard !launched, cancelReason == nil, readyWorkers.count == workerCount else { return [] }
        launched = true
        launching = true
        return [.launchAll]
    }

    /// Every worker has been sent `launch`: a cancel that came meanwhile goes out now.
    package mutating func launchSent() -> [Action] {
        // A cancel before `launchAll` prevents it: a reason set now was decided while launching.
        guard launching else { return [] }
        launching = false
        return cancelReason.map { [.cancelAll(reason: $0)] } ?? []
    }

    /// Keeps the last lines of each rank's stderr for the summary.
    package mutating func output(rank: Int, stream: UInt8, bytes: [UInt8]) {
        guard stream == 2 else { return }
        var record = ranks[rank] ?? RankRecord()
        // Line ends found with memchr, and only the lines that can end up in the tail are
        // copied: a rank that floods stderr costs the master a scan, not a copy per line.
        var ends: [Int] = []
        bytes.withUnsafeBytes { raw in
            var at = 0
            while let end = Memory.firstIndex(of: 10, in: raw, from: at) {
                ends.append(end)
                at = end + 1
            }
        }
        record.stderrLineCount += ends.count
        for (k, end) in ends.enumerated().dropFirst(max(0, ends.count - Self.tailLines)) {
            // The first line of the chunk finishes the line the previous chunk left open.
            var line = k == 0 ? record.partialStderr : []
            Self.appendLineStart(bytes[(k == 0 ? 0 : ends[k - 1] + 1)..<end], to: &line)
            record.stderrTail.append(line)
        }
        if record.stderrTail.count > Self.tailLines { record.stderrTail.removeFirst(record.stderrTail.count - Self.tailLines) }
        if !ends.isEmpty { record.partialStderr = [] }
        Self.appendLineStart(bytes[((ends.last.map { $0 + 1 }) ?? 0)...], to: &record.partialStderr)
        ranks[rank] = record
    }

    static let lineBytes = 4096

    /// A line longer than `lineBytes` is not a useful summary line: keep its start only. The cap
    /// applies to every piece of the line, so a long line that ends in a later chunk is not
    /// kept as its start glued to its end.
    private static func appendLineStart(_ piece: ArraySlice<UInt8>, to line: inout [UInt8]) {
        line.append(contentsOf: piece.prefix(max(0, lineBytes - line.count)))
    }

    package mutating func rankExited(worker: Int, rank: Int, status: RankStatus, endedByDistr: Bool) -> [Action] {
        var record = ranks[rank] ?? RankRecord()
        guard record.status == nil else { return [] }
        record.status = status
        record.endedByDistr = endedByDistr
        if !record.partialStderr.isEmpty {
            record.stderrTail.append(record.partialStderr)
            record.stderrLineCount += 1
            if record.stderrTail.count > Self.tailLines { record.stderrTail.removeFirst() }
            record.partialStderr = []
        }
        ranks[rank] = record
        if holdsCleanExits && status.code == 0 {
            heldExits.append((rank, worker))
            return heldExits.count == 1 ? [.releaseExitsLater] : []
        }
        // Held exits go first: every worker hears of the exits in the order they happened.
        var actions = releaseHeldExits() + [relayExit(rank: rank, code: status.code, except: worker)]
        if status.code != 0 && !endedByDistr && firstFailure == nil {
            firstFailure = rank
            if failFast { actions += cancel(reason: "rank \(rank) failed (\(status))") }
        }
        return actions
    }

    /// Workers with a rank whose exit has not been seen (a worker whose ranks are not known
    /// counts): the only ones a relayed exit can still concern.
    package var workersWithRunningRanks: Set<Int> { Set((0..<workerCount).filter(runsARank)) }

    private func runsARank(_ worker: Int) -> Bool {
        ranksOfWorker[worker].map { $0.contains { ranks[$0]?.status == nil } } ?? true
    }

    /// Relays the held clean exits to the workers that still run a rank now.
    package mutating func releaseHeldExits() -> [Action] {
        defer { heldExits = [] }
        return heldExits.map { relayExit(rank: $0.rank, code: 0, except: $0.worker) }.filter { action in
            if case .relayExit(_, _, let to) = action { return !to.isEmpty }
            return true
        }
    }

    private func relayExit(rank: Int, code: Int32, except: Int) -> Action {
        .relayExit(rank: rank, code: code, to: (0..<workerCount).filter { $0 != except && runsARank($0) })
    }

    package mutating func keptDirectory(worker: Int, path: String) { keptDirectories[worker] = path }

    /// A worker is done: its job ended (error nil) or it failed or was lost.
    package mutating func workerFinished(_ worker: Int, error: String?) -> [Action] {
        guard finishedWorkers.insert(worker).inserted else { return [] }
        var actions: [Action] = []
        if let error {
            workerErrors[worker] = error
            // Without that node the job cannot go on (run), or cannot start at all.
            if failFast || !launched { actions += cancel(reason: "a node failed") }
            if launched {
                actions += releaseHeldExits()
                for rank in ranksOfWorker[worker] ?? [] where ranks[rank]?.status == nil {
                    actions.append(relayExit(rank: rank, code: Self.lostRankCode, except: worker))
                }
            }
        }
        if finishedWorkers.count == workerCount { actions.append(.allFinished) }
        return actions
    }

    /// Ends the job everywhere (once): a failure, the time limit, or the user.
    package mutating func cancel(reason: String) -> [Action] {
        guard cancelReason == nil else { return [] }
        cancelReason = reason
        return launching ? [] : [.cancelAll(reason: reason)]
    }
}
