/// The worker's side of one job's control connection, as a pure state machine: messages and
/// events in, actions out. The worker's threads only move bytes and carry the actions out.
///
/// ```
/// awaitingJob ──statusRequest──▶ ended (after reporting; no job)
/// awaitingJob ──jobStart──▶ preparing ──prepared──▶ receivingFiles ──files complete──▶ ready
///   ready ──launch──▶ running ──ranks finished──▶ ended
///   running ──cancel / connection lost──▶ ending ──ranks finished──▶ ended
///   awaitingJob, preparing, receivingFiles, ready ──cancel / failure / connection lost──▶ ended (abandoned)
/// ```
/// docs/protocol.md has the message sequence.
package struct WorkerJobProtocol: Sendable {
    package enum State: Equatable, Sendable {
        case awaitingJob
        case preparing
        case receivingFiles
        case ready
        case running
        case ending
        case ended
    }

    package enum Action: Equatable, Sendable {
        /// Check the description, make the directory, find cached files; then call `prepared`
        /// or `failed`.
        case prepare(JobSpec)
        /// Write the next bytes of the file stream; then call `filesWritten` or `failed`.
        case writeFiles([UInt8])
        /// Check the files that awaited these digests; then call `filesWritten` or `failed`.
        case checkDigests([FileDigest])
        /// Make the job known to rank connections and tell the master it is ready (`jobReady`).
        case register
        case send(ControlMessage)
        case startRanks
        case relayPeerExit(rank: Int, status: Int32)
        /// Hand these bytes of the master's stdin to the rank (empty: close its stdin).
        case writeStdin(rank: Int, bytes: [UInt8])
        /// End the running ranks (TERM, grace, KILL); `ranksFinished` follows.
        case cancel(reason: String)
        /// Remove whatever was prepared; nothing ran. `error` is logged when set.
        case abandon(reason: String, error: Bool)
        /// Report `jobEnded` and end the sending direction.
        case reportEnd
        /// Answer `distr-master status` with a `statusReport` (the master's clock sent at `sentAt`).
        case reportStatus(sentAt: UInt64)
    }

    package private(set) var state: State = .awaitingJob
    /// This worker's ranks that read the master's stdin.
    private var stdinRanks = Set<Int>()
    /// Those whose end of input has arrived: nothing more may come for them.
    private var stdinEnded = Set<Int>()

    package init() {}

    package mutating func received(_ message: ControlMessage) -> [Action] {
        switch (state, message) {
        case (.awaitingJob, .statusRequest(let sentAt)):
            state = .ended
            return [.reportStatus(sentAt: sentAt)]
        case (.awaitingJob, .jobStart(let spec)):
            state = .preparing
            stdinRanks = Set(spec.stdinRanks).intersection(spec.localRanks)
            return [.prepare(spec)]
        case (.receivingFiles, .fileData(let bytes)):
            return [.writeFiles(bytes)]
        case (.receivingFiles, .fileDigests(let digests)):
            return [.checkDigests(digests)]
        case (.ready, .launch):
            state = .running
            return [.startRanks]
        case (.preparing, .cancel(let reason)), (.receivingFiles, .cancel(let reason)), (.ready, .cancel(let reason)):
            state = .ended
            return [.abandon(reason: "cancelled before it started: \(reason)", error: false)]
        case (.running, .cancel(let reason)):
            state = .ending
            return [.cancel(reason: reason)]
        case (.running, .peerExited(let rank, let status)), (.ending, .peerExited(let rank, let status)):
            return [.relayPeerExit(rank: rank, status: status)]
        case (.running, .stdinData(let rank, let bytes)):
            guard stdinRanks.contains(rank), !stdinEnded.contains(rank) else {
                return violation("stdinData for rank \(rank), which does not read stdin here or whose input has ended")
            }
            if bytes.isEmpty { stdinEnded.insert(rank) }
            return [.writeStdin(rank: rank, bytes: bytes)]
        case (.ending, .cancel), (.ending, .stdinData), (.ended, _), (_, .heartbeat):
            // A heartbeat's arrival is what counts (see `Liveness`); it changes nothing here.
            return []
        default:
            return violation("unexpected \(message.name) while \(state)")
        }
    }

    /// The job's directory is ready; `needed` are the files the master must send (the others
    /// came from the cache), `complete` whether no bytes are left to receive.
    package mutating func prepared(needed: [Int], hasManifest: Bool, complete: Bool) -> [Action] {
        guard state == .preparing else { return [] }
        var actions: [Action] = hasManifest ? [.send(.filesNeeded(needed))] : []
        if complete {
            state = .ready
            actions.append(.register)
        } else {
            state = .receivingFiles
        }
        return actions
    }

    /// Bytes were written; `complete` when the last file is whole and verified.
    package mutating func filesWritten(complete: Bool) -> [Action] {
        guard state == .receivingFiles, complete else { return [] }
        state = .ready
        return [.register]
    }

    /// Preparing, writing or registering failed: tell the master why and leave nothing behind.
    package mutating func failed(_ reason: String) -> [Action] {
        switch state {
        case .awaitingJob, .preparing, .receivingFiles, .ready:
            state = .ended
            return [.send(.failure(reason)), .abandon(reason: reason, error: true)]
        case .running:
            state = .ending
            return [.send(.failure(reason)), .cancel(reason: reason)]
        case .ending, .ended:
            return []
        }
    }

    /// The master's connection ended (or broke) with this reason.
    package mutating func connectionEnded(_ reason: String) -> [Action] {
        switch state {
        case .awaitingJob, .preparing, .receivingFiles, .ready:
            state = .ended
            return [.abandon(reason: "the master connection ended before the job started (\(reason))", error: true)]
        case .running:
            state = .ending
            return [.cancel(reason: "the master connection was lost (\(reason))")]
        case .ending, .ended:
            return []
        }
    }

    /// Every rank has exited and the job is cleaned up.
    package mutating func ranksFinished() -> [Action] {
        guard state == .running || state == .ending else { return [] }
        state = .ended
        return [.reportEnd]
    }

    private mutating func violation(_ what: String) -> [Action] {
        failed("protocol violation: \(what)")
    }
}

extension ControlMessage {
    /// The message's name, for errors about message order.
    package var name: String {
        switch self {
        case .jobStart: "jobStart"
        case .fileData: "fileData"
        case .fileDigests: "fileDigests"
        case .launch: "launch"
        case .stdinData: "stdinData"
        case .cancel: "cancel"
        case .peerExited: "peerExited"
        case .jobReady: "jobReady"
        case .output: "output"
        case .rankExited: "rankExited"
        case .jobEnded: "jobEnded"
        case .failure: "failure"
        case .filesNeeded: "filesNeeded"
        case .statusRequest: "statusRequest"
        case .statusReport: "statusReport"
        case .jobQueued: "jobQueued"
        case .heartbeat: "heartbeat"
        case .workerHeartbeat: "workerHeartbeat"
        case .workerShuttingDown: "workerShuttingDown"
        }
    }
}
