/// The master's side of one worker's control connection, as a pure state machine.
///
/// ```
/// idle ──start──▶ awaitingFileList ──filesNeeded──▶ awaitingReady ──jobReady──▶ ready
///   (no files: idle ──start──▶ awaitingReady)
///   awaitingFileList ──jobQueued──▶ awaitingFileList (the worker runs --max-jobs jobs; said once)
///   ready ──launch──▶ launched ──output / rankExited…──▶ launched ──jobEnded──▶ ended
///   any ──failure / violation / connection lost──▶ ended (with an error, unless cancelled first)
///   launched ──failure──▶ launched (the error is kept; the exits and jobEnded that follow are read)
/// ```
/// Messages for the worker that arrive before the job description is sent (a cancel, a relayed
/// exit) are held and sent after it: a worker must see its job before anything about it.
package struct MasterLinkProtocol: Sendable {
    package enum State: Equatable, Sendable {
        case idle
        case awaitingFileList
        case awaitingReady
        case ready
        case launched
        case ended
    }

    package enum Action: Equatable, Sendable {
        case send(ControlMessage)
        /// Stream these manifest entries' bytes, in order.
        case sendFiles([Int])
        /// The worker holds the job until one of its `running` jobs ends (`--max-jobs`).
        case queued(running: Int, maxJobs: Int, holders: [String])
        /// The worker has unpacked the job (in this directory) and waits for `launch`.
        case ready(directory: String)
        case output(rank: Int, stream: UInt8, timestamp: UInt64, bytes: [UInt8])
        case rankExited(rank: Int, status: RankStatus, endedByDistr: Bool)
        /// The worker is done with the job; `error` says why it failed, if it did.
        case finished(keptDirectory: String?, error: String?)
    }

    package private(set) var state: State = .idle

    /// Whether `.output` of `rank` is taken now (`received` turns it into an `.output` action),
    /// asked without decoding the message: the master labels output where it was read.
    package func acceptsOutput(rank: Int) -> Bool { state == .launched && spec.localRanks.contains(rank) }
    let spec: JobSpec
    private var held: [ControlMessage] = []
    private var cancelled = false
    private var keptDirectory: String?
    /// A failure the worker reported after launch: the job goes on ending, then this is the error.
    private var failedWhileRunning: String?
    private var toldQueued = false

    package init(spec: JobSpec) { self.spec = spec }

    /// Whether a cancel was delivered: a file upload in progress stops.
    package var isCancelled: Bool { cancelled }

    /// Sends the job description (and whatever was held for after it).
    package mutating func start() -> [Action] {
        guard state == .idle else { return [] }
        state = spec.manifest.isEmpty ? .awaitingReady : .awaitingFileList
        let now = held.filter { !$0.isForLaunchedRanks }
        held.removeAll { !$0.isForLaunchedRanks }
        return [.send(.jobStart(spec))] + now.map { .send($0) }
    }

    /// A message for the worker: sent now, or held until the job description is out.
    package mutating func deliver(_ message: ControlMessage) -> [Action] {
        if case .cancel = message { cancelled = true }
        switch (state, message) {
        case (.ended, _): return []
        case (.idle, _), (.awaitingFileList, .peerExited), (.awaitingReady, .peerExited), (.ready, .peerExited),
            (.awaitingFileList, .stdinData), (.awaitingReady, .stdinData), (.ready, .stdinData):
            // A relayed exit or input is about ranks that only exist once this worker has launched.
            held.append(message)
            return []
        default: return [.send(message)]
        }
    }

    package mutating func launch() -> [Action] {
        guard state == .ready, !cancelled else { return [] }
        state = .launched
        defer { held = [] }
        return [.send(.launch)] + held.map { .send($0) }
    }

    package mutating func received(_ message: ControlMessage) -> [Action] {
        switch (state, message) {
        case (.awaitingFileList, .filesNeeded(let indices)):
            guard indices.allSatisfy(spec.manifest.indices.contains), zip(indices, indices.dropFirst()).allSatisfy({ $0 < $1 }) else {
                return end(error: "protocol violation: the worker asked for files the job does not have")
            }
            state = .awaitingReady
            return [.sendFiles(indices)]
        case (.awaitingFileList, .jobQueued(let running, let maxJobs, let holders)),
            (.awaitingReady, .jobQueued(let running, let maxJobs, let holders)):
            // Said once: the worker sends it once per job, but a second must not print twice.
            guard !toldQueued else { return [] }
            toldQueued = true
            return [.queued(running: running, maxJobs: maxJobs, holders: holders)]
        case (.awaitingReady, .jobReady(let directory)):
            state = .ready
            if spec.keepDirectory { keptDirectory = directory }
            return [.ready(directory: directory)]
        case (.launched, .output(let rank, let stream, let timestamp, let bytes)) where acceptsOutput(rank: rank):
            return [.output(rank: rank, stream: stream, timestamp: timestamp, bytes: bytes)]
        case (.launched, .rankExited(let rank, let status, let ended)) where spec.localRanks.contains(rank):
            return [.rankExited(rank: rank, status: status, endedByDistr: ended)]
        case (.launched, .jobEnded(let kept)):
            state = .ended
            return [.finished(keptDirectory: kept ?? keptDirectory, error: failedWhileRunning)]
        case (.ended, _), (_, .workerHeartbeat):
            // A heartbeat's arrival is what counts (see `Liveness`); it changes nothing here.
            return []
        case (.launched, .workerShuttingDown):
            // Its ranks' exits (killed by SIGTERM) and jobEnded still follow; this is the cause.
            failedWhileRunning = "shut down during the job"
            return []
        case (_, .workerShuttingDown):
            return end(error: "shut down before the job started")
        case (.launched, .failure(let reason)):
            // The worker is ending the job; its ranks' exits and jobEnded still follow.
            if failedWhileRunning == nil { failedWhileRunning = "the worker failed the job: \(reason)" }
            return []
        case (_, .failure(let reason)):
            return end(error: "the worker refused the job: \(reason)")
        default:
            return end(error: "protocol violation: the worker sent \(message.name) while \(state)")
        }
    }

    /// The connection ended or broke (`reason`), or a file could not be sent. `silent`: the
    /// worker stopped answering (no heartbeat; see `Liveness`), and `reason` says for how long.
    package mutating func connectionEnded(_ reason: String, silent: Bool = false) -> [Action] {
        guard state != .ended else { return [] }
        // A worker that was cancelled before it launched closes without a jobEnded.
        if cancelled && state != .launched && !silent { return end(error: nil) }
        if silent { return end(error: failedWhileRunning ?? reason) }
        return end(error: failedWhileRunning ?? "connection lost during the job (\(reason))")
    }

    /// Something on the master's side failed (a shipped file could not be read).
    package mutating func failedLocally(_ reason: String) -> [Action] {
        guard state != .ended else { return [] }
        return end(error: reason)
    }

    private mutating func end(error: String?) -> [Action] {
        state = .ended
        return [.finished(keptDirectory: keptDirectory, error: error)]
    }
}

extension ControlMessage {
    /// Messages about ranks, which a worker may only see once it has launched them.
    var isForLaunchedRanks: Bool {
        switch self {
        case .peerExited, .stdinData: true
        default: false
        }
    }
}
