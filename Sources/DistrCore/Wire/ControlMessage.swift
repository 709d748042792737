/// How a rank's process ended.
package enum RankStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// The worker could not start it (message says why).
    case failedToStart(String)

    /// The shell convention: the exit code, or 128+N for signal N, or 127 when it could not start.
    package var code: Int32 {
        switch self {
        case .exited(let c): c
        case .signaled(let s): 128 + s
        case .failedToStart: 127
        }
    }

    package var description: String {
        switch self {
        case .exited(let c): "exit \(c)"
        case .signaled(let s): "killed by signal \(s) (\(signalName(s)))"
        case .failedToStart(let why): "could not start: \(why)"
        }
    }
}

func signalName(_ s: Int32) -> String {
    let names: [Int32: String] = [
        1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 8: "SIGFPE", 9: "SIGKILL",
        11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
    ]
    return names[s] ?? "signal \(s)"
}

/// One file in a bundle's manifest.
package struct ManifestEntry: Sendable, Equatable {
    package var path: String
    package var mode: UInt32
    package var size: Int
    /// The file's SHA-256; empty when it follows the file's bytes (`fileDigests`): the master
    /// hashes such a file while it is being sent (docs/protocol.md, "Hashing").
    package var digest: [UInt8]

    /// Whether the digest comes after the file's bytes instead of in the manifest.
    package var digestFollows: Bool { digest.isEmpty }

    package init(path: String, mode: UInt32, size: Int, digest: [UInt8]) {
        self.path = path
        self.mode = mode
        self.size = size
        self.digest = digest
    }
}

/// A file's SHA-256 sent after its bytes (`ControlMessage.fileDigests`), by manifest index.
package struct FileDigest: Sendable, Equatable {
    package var index: Int
    package var digest: [UInt8]

    package init(index: Int, digest: [UInt8]) {
        self.index = index
        self.digest = digest
    }
}

/// Where one rank runs: the worker address the master reached and its rank-local details.
package struct RankPlacement: Sendable, Equatable {
    package var rank: Int
    package var host: String
    package var port: Int
    /// Index of the worker connection this rank belongs to (ranks with the same index share a worker).
    package var worker: Int
    /// The peer as written by the user (DISTR_HOST).
    package var label: String

    package init(rank: Int, host: String, port: Int, worker: Int, label: String) {
        self.rank = rank
        self.host = host
        self.port = port
        self.worker = worker
        self.label = label
    }
}

/// Everything a worker needs to run its part of a job. The file bytes follow in `fileData` frames,
/// in manifest order.
package struct JobSpec: Sendable, Equatable {
    package var jobID: String
    package var arguments: [String]
    package var environment: [String]
    /// Ranks this worker runs.
    package var localRanks: [Int]
    /// Every rank of the job, in rank order.
    package var placements: [RankPlacement]
    package var keepDirectory: Bool
    package var jobKey: [UInt8]
    package var manifest: [ManifestEntry]
    /// This worker's index in `placements[].worker`.
    package var workerIndex: Int
    /// The ranks (of the whole job) whose stdin is the master's (`--stdin`); the others read
    /// `/dev/null`.
    package var stdinRanks: [Int]

    package init(
        jobID: String, arguments: [String], environment: [String], localRanks: [Int], placements: [RankPlacement],
        keepDirectory: Bool, jobKey: [UInt8], manifest: [ManifestEntry], workerIndex: Int, stdinRanks: [Int] = []
    ) {
        self.jobID = jobID
        self.arguments = arguments
        self.environment = environment
        self.localRanks = localRanks
        self.placements = placements
        self.keepDirectory = keepDirectory
        self.jobKey = jobKey
        self.manifest = manifest
        self.workerIndex = workerIndex
        self.stdinRanks = stdinRanks
    }

    package var nodeCount: Int { placements.count }
}

/// Frames on a control connection between master and worker.
package enum ControlMessage: Sendable, Equatable {
    // master → worker
    case jobStart(JobSpec)
    case fileData([UInt8])
    /// The digests of the files whose digest follows their bytes (`ManifestEntry.digestFollows`)
    /// and whose last byte came in the `fileData` frame just before: manifest index and SHA-256,
    /// in manifest order.
    case fileDigests([FileDigest])
    case cancel(reason: String)
    case peerExited(rank: Int, status: Int32)
    /// Every worker has the job: start the ranks.
    case launch
    /// `distr-master status`: report on yourself (`sentAt`: the master's wall clock, ns).
    case statusRequest(sentAt: UInt64)
    /// The next bytes of the master's stdin for `rank`; empty bytes: end of input.
    case stdinData(rank: Int, bytes: [UInt8])
    /// "Still here" (master → worker, type 9; see `Liveness`).
    case heartbeat
    // worker → master
    /// The job is unpacked in `directory` and known to rank connections; waiting for `launch`.
    case jobReady(directory: String)
    case output(rank: Int, stream: UInt8, timestamp: UInt64, bytes: [UInt8])
    case rankExited(rank: Int, status: RankStatus, endedByDistr: Bool)
    case jobEnded(keptDirectory: String?)
    case failure(String)
    /// worker → master, after jobStart with files: the manifest indices to send (the rest it
    /// has in its cache).
    case filesNeeded([Int])
    case statusReport(StatusReport)
    /// After jobStart: the worker runs `running` jobs already (its bound is `maxJobs`, started
    /// by the masters at `holders`); this one waits for a slot, then goes on as usual.
    case jobQueued(running: Int, maxJobs: Int, holders: [String])
    /// "Still here" (worker → master, type 18).
    case workerHeartbeat
    /// The worker is shutting down (SIGTERM) and ends this job; its ranks' exits follow.
    case workerShuttingDown(reason: String)

    package static let fileDataType: UInt8 = 2
    package static let heartbeatType: UInt8 = 9
    package static let workerHeartbeatType: UInt8 = 18

    package var type: UInt8 {
        switch self {
        case .jobStart: 1
        case .fileData: Self.fileDataType
        case .fileDigests: 8
        case .cancel: 3
        case .peerExited: 4
        case .launch: 5
        case .statusRequest: 6
        case .stdinData: 7
        case .heartbeat: Self.heartbeatType
        case .jobReady: 10
        case .output: 11
        case .rankExited: 12
        case .jobEnded: 13
        case .failure: 14
        case .filesNeeded: 15
        case .statusReport: 16
        case .jobQueued: 17
        case .workerHeartbeat: Self.workerHeartbeatType
        case .workerShuttingDown: 19
        }
    }

    package func encoded() -> [UInt8] {
        var w = ByteWriter()
        switch self {
        case .jobStart(let spec):
            w.string(spec.jobID)
            w.strings(spec.arguments)
            w.strings(spec.environment)
            w.u32(UInt32(spec.localRanks.count))
            for r in spec.localRanks { w.int(r) }
            w.u32(UInt32(spec.placements.count))
            for p in spec.placements {
                w.int(p.rank)
                w.string(p.host)
                w.int(p.port)
                w.int(p.worker)
                w.string(p.label)
            }
            w.bool(spec.keepDirectory)
            w.data(spec.jobKey)
            w.u32(UInt32(spec.manifest.count))
            for e in spec.manifest {
                w.string(e.path)
                w.u32(e.mode)
                w.int(e.size)
                w.data(e.digest)
            }
            w.int(spec.workerIndex)
            w.u32(UInt32(spec.stdinRanks.count))
            for rank in spec.stdinRanks { w.int(rank) }
        case .fileData(let bytes): return bytes
        case .fileDigests(let digests):
            w.u32(UInt32(digests.count))
            for file in digests {
                w.int(file.index)
                w.data(file.digest)
            }
        case .cancel(let reason): w.string(reason)
        case .peerExited(let rank, let status):
            w.int(rank)
            w.u32(UInt32(bitPattern: status))
        case .launch, .heartbeat, .workerHeartbeat: break
        case .statusRequest(let sentAt): w.u64(sentAt)
        case .statusReport(let report): report.encode(into: &w)
        case .jobQueued(let running, let maxJobs, let holders):
            w.int(running)
            w.int(maxJobs)
            w.strings(holders)
        case .stdinData(let rank, let bytes):
            w.int(rank)
            w.raw(bytes)
        case .workerShuttingDown(let reason): w.string(reason)
        case .jobReady(let directory): w.string(directory)
        case .output(let rank, let stream, let timestamp, let bytes):
            w.int(rank)
            w.u8(stream)
            w.u64(timestamp)
            w.raw(bytes)
        case .rankExited(let rank, let status, let ended):
            w.int(rank)
            switch status {
            case .exited(let c):
                w.u8(0)
                w.u32(UInt32(bitPattern: c))
            case .signaled(let s):
                w.u8(1)
                w.u32(UInt32(bitPattern: s))
            case .failedToStart(let why):
                w.u8(2)
                w.string(why)
            }
            w.bool(ended)
        case .jobEnded(let kept):
            w.bool(kept != nil)
            w.string(kept ?? "")
        case .failure(let message): w.string(message)
        case .filesNeeded(let indices):
            w.u32(UInt32(indices.count))
            for index in indices { w.int(index) }
        }
        return w.bytes
    }

    /// - Throws: `WireError.unknownMessage` or `.truncated` on a malformed payload.
    package static func decode(type: UInt8, payload: [UInt8]) throws(WireError) -> ControlMessage {
        var r = ByteReader(payload)
        let message: ControlMessage
        switch type {
        case 1:
            let jobID = try r.string()
            let arguments = try r.strings()
            let environment = try r.strings()
            var localRanks: [Int] = []
            for _ in 0..<(try r.count(elementSize: 8)) { localRanks.append(try r.int()) }
            var placements: [RankPlacement] = []
            for _ in 0..<(try r.count(elementSize: 32)) {
                placements.append(
                    RankPlacement(rank: try r.int(), host: try r.string(), port: try r.int(), worker: try r.int(), label: try r.string()))
            }
            let keep = try r.bool()
            let key = try r.data()
            var manifest: [ManifestEntry] = []
            for _ in 0..<(try r.count(elementSize: 20)) {
                manifest.append(ManifestEntry(path: try r.string(), mode: try r.u32(), size: try r.int(), digest: try r.data()))
            }
            let workerIndex = try r.int()
            var stdinRanks: [Int] = []
            for _ in 0..<(try r.count(elementSize: 8)) { stdinRanks.append(try r.int()) }
            message = .jobStart(
                JobSpec(
                    jobID: jobID, arguments: arguments, environment: environment, localRanks: localRanks,
                    placements: placements, keepDirectory: keep, jobKey: key, manifest: manifest, workerIndex: workerIndex,
                    stdinRanks: stdinRanks))
        case fileDataType: return .fileData(payload)
        case 8:
            var digests: [FileDigest] = []
            for _ in 0..<(try r.count(elementSize: 12)) {
                let file = FileDigest(index: try r.int(), digest: try r.data())
                guard file.digest.count == 32 else { throw .refused("fileDigests with a digest of \(file.digest.count) bytes (a SHA-256 has 32)") }
                digests.append(file)
            }
            message = .fileDigests(digests)
        case 3: message = .cancel(reason: try r.string())
        case 4: message = .peerExited(rank: try r.int(), status: Int32(bitPattern: try r.u32()))
        case 5: message = .launch
        case 6: message = .statusRequest(sentAt: try r.u64())
        case 16: message = .statusReport(try StatusReport.decode(from: &r))
        case 17:
            let running = try r.int()
            let maxJobs = try r.int()
            let holders = try r.strings()
            guard running >= 0, maxJobs >= 0 else { throw .refused("jobQueued with a negative count (\(running) of \(maxJobs))") }
            message = .jobQueued(running: running, maxJobs: maxJobs, holders: holders)
        case 7:
            let rank = try r.int()
            return .stdinData(rank: rank, bytes: try r.raw(r.remaining))
        case heartbeatType: message = .heartbeat
        case workerHeartbeatType: message = .workerHeartbeat
        case 19: message = .workerShuttingDown(reason: try r.string())
        case 10: message = .jobReady(directory: try r.string())
        case 11:
            let rank = try r.int()
            let stream = try r.u8()
            let timestamp = try r.u64()
            return .output(rank: rank, stream: stream, timestamp: timestamp, bytes: try r.raw(r.remaining))
        case 12:
            let rank = try r.int()
            let status: RankStatus
            switch try r.u8() {
            case 0: status = .exited(Int32(bitPattern: try r.u32()))
            case 1: status = .signaled(Int32(bitPattern: try r.u32()))
            default: status = .failedToStart(try r.string())
            }
            message = .rankExited(rank: rank, status: status, endedByDistr: try r.bool())
        case 13:
            let has = try r.bool()
            let path = try r.string()
            message = .jobEnded(keptDirectory: has ? path : nil)
        case 14: message = .failure(try r.string())
        case 15:
            var indices: [Int] = []
            for _ in 0..<(try r.count(elementSize: 8)) { indices.append(try r.int()) }
            message = .filesNeeded(indices)
        default: throw .unknownMessage(type: type)
        }
        guard r.isAtEnd else { throw .truncated }
        return message
    }
}

extension Connection {
    /// Sends one message. A job description's key travels wrapped under this session (see
    /// `jobKeyPad`): a listener on the wire cannot read it.
    package func send(_ message: ControlMessage) throws(SystemError) {
        var message = message
        if case .jobStart(var spec) = message {
            spec.jobKey = xor(spec.jobKey, jobKeyPad(jobID: spec.jobID, sending: true))
            message = .jobStart(spec)
        }
        try send(type: message.type, payload: message.encoded())
    }

    /// Sends one message, for a sender that has nothing to add when it fails: a failed send means
    /// the connection is gone, and the reading loop of this connection sees that and ends its
    /// session (or the sender is letting go of the connection anyway).
    package func sendIfConnected(_ message: ControlMessage) {
        try? send(message)  // Gone: the reading loop ends the session; see above.
    }

    /// The next message (a job description's key unwrapped).
    /// - Throws: what `receive(idle:)` throws, or `WireError` for a malformed message.
    package func receiveMessage(idle: Deadline = .never) throws -> ControlMessage {
        let (type, payload) = try receive(idle: idle)
        return try message(type: type, payload: payload)
    }

    /// Decodes a received frame (from `receiveFrames`) as `receiveMessage` does.
    /// - Throws: `WireError` for a malformed message.
    package func message(type: UInt8, payload: [UInt8]) throws -> ControlMessage {
        let message = try ControlMessage.decode(type: type, payload: payload)
        if case .jobStart(var spec) = message {
            guard spec.jobKey.count == 32 else { throw WireError.refused("the job key must be 32 bytes") }
            spec.jobKey = xor(spec.jobKey, jobKeyPad(jobID: spec.jobID, sending: false))
            return .jobStart(spec)
        }
        return message
    }

    private func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { zip(a, b).map { $0 ^ $1 } }
}
