import Dispatch
import Synchronization

/// One job on one worker: its directory, its ranks, and the master connection it reports to.
final class Job: Sendable {
    let spec: JobSpec
    let directory: String
    let connection: Connection
    /// The job's cgroup, when the worker may make one, with its `cgroup.procs` and directory
    /// open for the spawner (the worker's: `SpareControlGroups` keeps or removes it at the end).
    let controlGroup: OpenControlGroup?
    /// The master's address and the job's nodes: their connections are never starved.
    let trustedHosts: Set<String>
    let grace: Double
    /// Put on every rank's `PYTHONPATH` (see `PythonModules.pythonPath`).
    let pythonModules: PythonModules?
    private let log: @Sendable (String) -> Void
    /// The local ranks, and every exit relayed so far (a rank started later is told of them).
    private let ranks = Mutex<(processes: [Int: RankProcess], exits: [(rank: Int, status: Int32)])>(([:], []))
    private let remaining: Atomic<Int>
    private let cancelled = Atomic<Bool>(false)
    private let finished = Latch()
    private let started = Latch()
    /// Taken (set to nil) when it runs: the closure holds the control session, which holds
    /// this job, and the cycle would keep both and their connection alive for ever.
    private let onFinish: Mutex<(@Sendable (Job) -> Void)?>

    init(
        spec: JobSpec, directory: String, connection: Connection, master: String, controlGroup: OpenControlGroup?, grace: Double,
        pythonModules: PythonModules? = nil, log: @escaping @Sendable (String) -> Void, onFinish: @escaping @Sendable (Job) -> Void
    ) {
        self.spec = spec
        self.controlGroup = controlGroup
        trustedHosts = Set(spec.placements.map(\.host) + [master])
        self.directory = directory
        self.connection = connection
        self.grace = grace
        self.pythonModules = pythonModules
        self.log = log
        self.onFinish = Mutex(onFinish)
        remaining = Atomic(spec.localRanks.count)
    }

    /// The worker's environment, read once: the worker never changes it, and parsing it into a
    /// dictionary for every rank cost about 40 µs of each job's way to its ranks.
    private static let workerEnvironment = Environment.all

    /// Environment of a rank: the worker's, the master's `--env` values, then distr's own
    /// (`PYTHONPATH` gets the Python modules in front of whatever it had).
    func environment(rank: Int) -> [String] {
        var values = Self.workerEnvironment
        for item in spec.environment {
            guard let eq = item.firstIndex(of: "=") else { continue }
            values[String(item[..<eq])] = String(item[item.index(after: eq)...])
        }
        if let pythonModules { values["PYTHONPATH"] = pythonModules.pythonPath(environment: values) }
        values["DISTR_NODE_ID"] = String(rank)
        values["DISTR_N_NODE"] = String(spec.nodeCount)
        values["DISTR_JOB_ID"] = spec.jobID
        values["DISTR_HOST"] = spec.placements.first { $0.rank == rank }?.label ?? ""
        values["DISTR_JOB_DIR"] = directory
        values["PYTHONUNBUFFERED"] = "1"
        values.removeValue(forKey: "DISTR_AGENT_FD")
        return values.map { "\($0.key)=\($0.value)" }
    }

    /// Starts every local rank; a rank that cannot start is reported as such.
    func start() {
        defer { started.open() }
        for rank in spec.localRanks {
            do {
                let process = try RankProcess(
                    rank: rank, arguments: spec.arguments, environment: environment(rank: rank), directory: directory,
                    controlGroupProcs: controlGroup?.procs, controlGroupDirectory: controlGroup?.directory,
                    readsStdin: spec.stdinRanks.contains(rank))
                // Under the same lock as relays: the rank hears of every exit, before or after.
                ranks.withLock { state in
                    state.processes[rank] = process
                    for exit in state.exits where exit.rank != rank {
                        tell(process, .peerExited(rank: exit.rank, status: exit.status))
                    }
                }
                let pumpBody: @Sendable () -> Void = { [self] in run(process) }
                Threads.start(name: "distr-rank-\(rank)", pumpBody)
                let agentBody: @Sendable () -> Void = { [self] in serveAgent(process) }
                Threads.start(name: "distr-agent-\(rank)", agentBody)
            } catch {
                let program = spec.arguments.first ?? ""
                let interpreter = RunPlan.isPython(program) ? RunPlan.python : "INTERPRETER"
                let why =
                    error.code == .noSuchFile
                    ? "'\(program)' not found on this node (not shipped, and not in PATH)"
                    : error.code == .permissionDenied
                        ? "'\(program)' is not executable on this node; chmod +x it there, or name its interpreter: "
                            + "distr-master run \(interpreter) \(program)"
                        : error.description
                // The status carries the reason; the master prints it once for all ranks it concerns.
                connection.sendIfConnected(.rankExited(rank: rank, status: .failedToStart(why), endedByDistr: false))
                rankDone()
            }
        }
    }

    private func run(_ process: RankProcess) {
        // Batches of 256 KiB: far under any master's frame limit (`Limits.maxFrame`).
        process.pumpOutput(batch: 256 * 1024, headroom: OutputFrame.headroom, tailroom: OutputFrame.tailroom) { stream, frame, count in
            let (rank, now) = (process.rank, Clock.wallNanoseconds)
            try? OutputFrame.send(frame, count: count, rank: rank, stream: stream, timestamp: now, over: connection)  // Gone: as sendIfConnected.
        }
        let status = process.status ?? .exited(-1)
        let endedByDistr = process.endedByDistr.load(ordering: .acquiring)
        connection.sendIfConnected(.rankExited(rank: process.rank, status: status, endedByDistr: endedByDistr))
        relayPeerExit(rank: process.rank, status: status.code)
        rankDone()
    }

    private func rankDone() {
        if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { finish() }
    }

    /// Tells a rank something through its agent channel.
    private func tell(_ process: RankProcess, _ message: AgentMessage) {
        try? AgentChannel.send(process.agentFD, message)  // Fails only when the rank has exited; its own thread reports that.
    }

    /// Answers the rank's agent requests until it closes its end.
    private func serveAgent(_ process: RankProcess) {
        while true {
            let received: (AgentMessage, [Int32])?
            do { received = try AgentChannel.receive(process.agentFD) } catch {
                // The rank's end has gone (a system error), or it sent what no distr rank sends.
                if error is WireError {
                    log("job \(spec.jobID): rank \(process.rank) sent a malformed agent message (\(error)); its requests are no longer served")
                }
                return
            }
            guard let (message, descriptors) = received else { return }
            for descriptor in descriptors { FD.close(descriptor) }
            switch message {
            case .hello, .helloSharedMemory, .helloReadingOffers, .helloAnswering:
                if case .helloSharedMemory = message { process.speaksSharedMemory.store(true, ordering: .releasing) }
                if case .helloReadingOffers = message {
                    process.speaksSharedMemory.store(true, ordering: .releasing)
                    process.readsOffers.store(true, ordering: .releasing)
                    process.answersBothWays.store(true, ordering: .releasing)
                }
                if case .helloAnswering = message { process.answersBothWays.store(true, ordering: .releasing) }
                process.greeted.open()
                tell(process, .welcome(jobID: spec.jobID, jobKey: spec.jobKey, workerIndex: spec.workerIndex, placements: spec.placements))
            case .connectLocal(let target):
                connectLocal(from: process, to: target)
            default:
                log("job \(spec.jobID): rank \(process.rank) sent an unexpected agent message; ignored")
            }
        }
    }

    private func connectLocal(from process: RankProcess, to target: Int) {
        // Ranks are spawned one after another: a fast rank may ask for one not spawned yet.
        if isLocal(rank: target) { started.wait(until: .after(10)) }
        guard let peer = ranks.withLock({ $0.processes[target] }), !peer.hasExited else {
            tell(process, .connected(to: target, error: "rank \(target) is not running on this worker"))
            return
        }
        do {
            let (mine, theirs) = try FD.socketPair()
            defer {
                FD.close(mine)
                FD.close(theirs)
            }
            // The target learns of the connection before the dialer can send on it.
            if let segment = sharedSegment(from: process, to: peer) {
                defer { FD.close(segment) }
                try AgentChannel.send(peer.agentFD, .incomingShared(from: process.rank), passingAll: [theirs, segment])
                // Read before the hello was answered (`sharedSegment` waited for it).
                if peer.readsOffers.load(ordering: .acquiring) { try AgentChannel.send(process.agentFD, .readsOffers(rank: target)) }
                try AgentChannel.send(process.agentFD, .connectedShared(to: target), passingAll: [mine, segment])
                return
            }
            try AgentChannel.send(peer.agentFD, .incoming(from: process.rank), passing: theirs)
            try AgentChannel.send(process.agentFD, .connected(to: target, error: ""), passing: mine)
        } catch {
            tell(process, .connected(to: target, error: "\(error)"))
        }
    }

    /// A ring segment for a connection from `process` to `peer`, when both speak shared memory
    /// (a Python rank, or one run with `DISTR_TRANSPORT=socket`, does not: the pair then gets a
    /// plain socket). The target may not have said hello yet: wait a little for it, then settle
    /// for a socket (a rank that joins late still gets its connection).
    private func sharedSegment(from process: RankProcess, to peer: RankProcess) -> Int32? {
        guard process.speaksSharedMemory.load(ordering: .acquiring), peer.greeted.wait(until: .after(2)),
            peer.speaksSharedMemory.load(ordering: .acquiring)
        else { return nil }
        do { return try SharedMemory.create(size: SharedRing.segmentSize()) } catch {
            log("job \(spec.jobID): no shared memory for rank \(process.rank) to rank \(peer.rank) (\(error)); they use a socket")
            return nil
        }
    }

    /// Hands an authenticated rank connection to its target rank. True when that rank answers
    /// `bothWays` (it said so in its hello; a rank that has not said hello yet is waited for as
    /// long as a shared-memory connection waits, then taken for one that does not).
    /// - Throws: when the rank is gone.
    func deliverIncoming(fd: Int32, from: Int, to: Int) throws -> Bool {
        guard let peer = ranks.withLock({ $0.processes[to] }), !peer.hasExited else {
            throw WireError.refused("rank \(to) has exited")
        }
        let answers = peer.greeted.wait(until: .after(2)) && peer.answersBothWays.load(ordering: .acquiring)
        try AgentChannel.send(peer.agentFD, .incoming(from: from), passing: fd)
        return answers
    }

    func isLocal(rank: Int) -> Bool { spec.localRanks.contains(rank) }

    /// Hands the master's stdin to a rank (empty bytes: end of input). Never blocks: see
    /// `StdinFeeder` for what happens to a rank that does not read.
    func writeStdin(rank: Int, bytes: [UInt8]) {
        // A rank that could not start has no stdin: its input goes nowhere.
        guard let feeder = ranks.withLock({ $0.processes[rank] })?.stdin else { return }
        if feeder.enqueue(bytes) { return }
        let why =
            "distr: rank \(rank) fell more than \(feeder.limit >> 20) MiB behind reading its stdin; "
            + "the rest of the input was dropped and its stdin closed\n"
        log("job \(spec.jobID): \(why.dropFirst(7).dropLast())")
        connection.sendIfConnected(.output(rank: rank, stream: 2, timestamp: Clock.wallNanoseconds, bytes: Array(why.utf8)))
    }

    /// Tells every local rank that `rank` exited, so receives waiting on it fail at once.
    func relayPeerExit(rank: Int, status: Int32) {
        ranks.withLock { state in
            state.exits.append((rank, status))
            // A rank that has exited has no use for it (and its channel may be gone).
            for process in state.processes.values where process.rank != rank && !process.hasExited {
                tell(process, .peerExited(rank: rank, status: status))
            }
        }
    }

    /// Ends the job: SIGTERM to every rank's process group, SIGKILL after the grace period.
    func cancel(reason: String) {
        guard !cancelled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        log("job \(spec.jobID): ending (\(reason))")
        // A rank that has already died (reaped, or a zombie not yet reaped) ended on its own: it
        // is not counted as ended by distr even if its status reaches the master after this.
        let live = ranks.withLock { Array($0.processes.values) }.filter { process in
            !process.hasExited && ProcessTable.info(process.pid).map { !$0.isZombie } == true
        }
        for process in live {
            process.endedByDistr.store(true, ordering: .releasing)
            tell(process, .abort(reason: reason))
            process.signalGroup(.terminate)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + grace) {
            for process in live where !process.hasExited { process.signalGroup(.kill) }
        }
    }

    /// The ranks' process groups (each rank leads its own).
    var processGroups: [Int32] { ranks.withLock { $0.processes.values.map(\.pid) } }

    /// Runs once, when every rank has exited: ends leftovers, then `onFinish` cleans up and
    /// reports.
    private func finish() {
        let all = ranks.withLock { Array($0.processes.values) }
        // Background children left in a rank's group; what escaped the group is swept by
        // `onFinish`.
        for process in all { process.signalGroup(.kill) }
        for process in all { process.closeDescriptors() }
        let onFinish = self.onFinish.withLock { stored in
            defer { stored = nil }
            return stored
        }
        onFinish?(self)
        finished.open()
    }

    /// For a job registered and never started (its master left, or failed, before `launch`):
    /// drops `onFinish`, which holds the control session (a cycle that would keep both, and
    /// their connection, for ever). Nothing of the job runs after this; its cgroup is the
    /// session's to give back.
    func discard() {
        onFinish.withLock { $0 = nil }
    }

    /// Blocks until every rank has been spawned (or failed to), or the deadline passes.
    func waitStarted(until deadline: Deadline) -> Bool { started.wait(until: deadline) }

    /// Blocks until the job has finished, or the deadline passes.
    @discardableResult
    func waitFinished(until deadline: Deadline) -> Bool { finished.wait(until: deadline) }
}
