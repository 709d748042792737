import Dispatch
import Synchronization

/// Runs one job on a set of workers: connect to all in parallel, ship the bundle, launch the
/// ranks once every worker is ready, stream the output, and turn what happened into one exit
/// status.
///
/// The decisions live in two pure state machines: `MasterLinkProtocol` per worker connection
/// and `JobPolicy` for the job. The threads here only move bytes and carry out their actions.
package final class Launcher: Sendable {
    /// One worker and the ranks it runs.
    struct Link: Sendable {
        var index: Int
        var peer: Peer
        var ranks: [Int]
    }

    /// A connected worker: its connection and its protocol state. Actions that send are carried
    /// out under `machine`'s lock, so messages leave in the order the machine decided them.
    final class Session: Sendable {
        let connection: Connection
        let machine: Mutex<MasterLinkProtocol>
        init(connection: Connection, spec: JobSpec) {
            self.connection = connection
            machine = Mutex(MasterLinkProtocol(spec: spec))
        }
    }

    let options: MasterOptions
    let secret: [UInt8]
    let links: [Link]
    let rankCount: Int
    let stderrFD: Int32
    /// When set, output and statuses go here and no summary is printed (the shell).
    let capture: JobCapture?
    private let connections = Mutex<[Int: Connection]>([:])
    private let sessions = Mutex<[Int: Session]>([:])
    private let policy = Mutex(JobPolicy(workerCount: 0, failFast: false))
    private let allFinished = Latch()
    /// When the clean exits held by the job policy are due to be relayed (nil: none are held).
    /// The thread that waits for the end releases them (see `waitAllFinished`).
    private let heldExitsDue = Mutex<Deadline?>(nil)
    /// Signalled when the job has finished or exits are held: wakes `waitAllFinished`.
    private let endOrHold = DispatchSemaphore(value: 0)
    /// Opened when the ranks are launched: the master's stdin is forwarded from then on.
    private let launched = Latch()
    private let printer: OutputPrinter
    private let filesError: OutputFilesError?
    private let interrupted = Atomic<Int>(0)
    var isInterrupted: Bool { interrupted.load(ordering: .acquiring) > 0 }
    let startTime = Clock.now

    /// Plans ranks over `peers`: `run` expands slots in peers order; `exec` runs one rank per
    /// distinct worker. Peers that name the same worker share one connection.
    package init(options: MasterOptions, peers: [Peer], secret: [UInt8], stderrFD: Int32 = 2, capture: JobCapture? = nil) {
        self.options = options
        self.capture = capture
        self.secret = secret
        self.stderrFD = stderrFD
        let (links, next) = Self.plan(peers, mode: options.mode)
        self.links = links
        rankCount = next
        // --output-dir: the files are made now; a directory that cannot be used is reported by `run`.
        var files: OutputFiles?
        var filesError: OutputFilesError?
        if let directory = options.outputDirectory {
            do { files = try OutputFiles(directory: directory, ranks: 0..<next) } catch { filesError = error }
        }
        self.filesError = filesError
        printer = OutputPrinter(
            mode: options.output, ranks: 0..<next, timestamps: options.timestamps, files: files,
            memoryLimitPerRank: options.spillAfter, memoryLimitTotal: max(options.spillAfter, OutputPrinter.defaultMemoryLimitTotal),
            stderrFD: stderrFD)
    }

    /// Links and ranks for `peers`, numbered from 0 in peers order.
    static func plan(_ peers: [Peer], mode: MasterOptions.Mode) -> (links: [Link], rankCount: Int) {
        var links: [Link] = []
        var byAddress: [String: Int] = [:]
        var next = 0
        for peer in peers {
            let key = peer.description
            let index: Int
            if let existing = byAddress[key] {
                index = existing
                if case .exec = mode { continue }
            } else {
                index = links.count
                byAddress[key] = index
                links.append(Link(index: index, peer: peer, ranks: []))
            }
            let count: Int
            if case .exec = mode { count = 1 } else { count = peer.slots }
            for _ in 0..<count {
                links[index].ranks.append(next)
                next += 1
            }
        }
        return (links, next)
    }

    func note(_ text: String) {
        printer.emit(stderrFD, Array("distr: \(text)\n".utf8))
    }

    /// Draws the progress line while the job runs, when output is held and stderr is a terminal.
    private func startProgress() -> ProgressLine? {
        guard options.output != .live || options.quiet, FD.isTerminal(stderrFD) else { return nil }
        let line = ProgressLine(fd: stderrFD) { [self] in
            policy.withLock { policy in
                var counts = ProgressLine.Counts(running: 0, done: 0, failed: 0)
                for record in policy.ranks.values {
                    guard let status = record.status else { continue }
                    if status.code == 0 { counts.done += 1 } else { counts.failed += 1 }
                }
                counts.running = rankCount - counts.done - counts.failed
                return counts
            }
        }
        printer.attach(line)
        return line
    }

    /// Runs the job and returns the exit status for `distr-master`.
    package func run() -> Int32 {
        let arguments: [String]
        var shipped = options.files
        switch options.mode {
        case .exec(let command):
            arguments = ExecCommand.arguments(command, environment: options.environment)
        case .run(let program, let rest):
            let plan: RunPlan
            do { plan = try RunPlan.make(program: program, arguments: rest, shipArguments: options.shipArguments, alsoShipped: options.files) } catch
            {
                note("\(error)")
                return ExitCode.usage
            }
            arguments = plan.command
            shipped = plan.shipped + shipped
            if !plan.argumentFiles.isEmpty && !options.quiet { note(RunPlan.note(shipping: plan.argumentFiles)) }
        }
        if let filesError {
            note("\(filesError)")
            return ExitCode.usage
        }
        // Large bundles: files the digest cache does not know are hashed while they are sent.
        let sources: [BundleSource]
        let hashing: LateHashing?
        do {
            (sources, hashing) = try BundleCollector.collect(
                shipped, digests: DigestCache.standard(), cacheAbove: DigestCache.worthAbove, lateFrom: BundleCollector.lateDigestMinimum)
        } catch {
            note("\(error)")
            return ExitCode.usage
        }
        defer { hashing?.finish() }

        var (reached, failures) = connectAll()
        var links = self.links
        var rankCount = self.rankCount
        if !failures.isEmpty && options.skipUnreachable && !reached.isEmpty {
            // Run on the nodes that answered, renumbered 0..k-1 as if only they were listed.
            let skipped = failures.sorted { $0.key < $1.key }.map(\.value)
            note("skipping \(failures.count) unreachable node(s) of \(self.links.count): \(skipped.joined(separator: "; "))")
            let kept = self.links.filter { reached[$0.index] != nil }
            rankCount = 0
            links = kept.enumerated().map { new, link in
                defer { rankCount += link.ranks.count }
                return Link(index: new, peer: link.peer, ranks: Array(rankCount..<(rankCount + link.ranks.count)))
            }
            let old = connections.withLock { $0 }
            connections.withLock { table in
                table = [:]
                for (new, link) in kept.enumerated() { table[new] = old[link.index] }
            }
            reached = Dictionary(uniqueKeysWithValues: kept.enumerated().compactMap { new, link in reached[link.index].map { (new, $0) } })
            failures = [:]
            printer.files?.discard(ranks: rankCount..<self.rankCount)
        }
        if !failures.isEmpty {
            for (_, why) in failures.sorted(by: { $0.key < $1.key }) { note(why) }
            note("\(failures.count) of \(links.count) node(s) could not be reached; nothing was started")
            closeAll()
            return ExitCode.unavailable
        }
        if isInterrupted {
            closeAll()
            note("interrupted before the job started")
            return ExitCode.interrupted
        }
        var placements: [RankPlacement] = []
        for link in links {
            for rank in link.ranks {
                placements.append(
                    RankPlacement(
                        rank: rank, host: reached[link.index] ?? link.peer.host, port: link.peer.port, worker: link.index,
                        label: link.peer.label))
            }
        }
        placements.sort { $0.rank < $1.rank }
        let jobID = randomBytes(8).hex
        let jobKey = randomBytes(32)
        let failFast: Bool
        if case .run = options.mode { failFast = !options.keepGoing } else { failFast = false }
        // `DISTR_MPI4PY=0 distr-master run ...` reaches the ranks; an explicit --env, applied after, wins.
        let environment = Environment.value("DISTR_MPI4PY").map { ["DISTR_MPI4PY=\($0)"] + options.environment } ?? options.environment
        let ranksOfWorker = Dictionary(uniqueKeysWithValues: links.map { ($0.index, $0.ranks) })
        let stdinRanks: [Int]
        switch options.stdin {
        case .none: stdinRanks = []
        case .firstRank: stdinRanks = [0]
        case .allRanks: stdinRanks = Array(0..<rankCount)
        }
        policy.withLock {
            $0 = JobPolicy(workerCount: links.count, failFast: failFast, ranksOfWorker: ranksOfWorker, holdsCleanExits: true)
        }
        sessions.withLock { table in
            for link in links {
                guard let connection = connections.withLock({ $0[link.index] }) else { continue }
                let spec = JobSpec(
                    jobID: jobID, arguments: arguments, environment: environment, localRanks: link.ranks,
                    placements: placements, keepDirectory: options.keepDirectory, jobKey: jobKey,
                    manifest: sources.map(\.entry), workerIndex: link.index, stdinRanks: stdinRanks)
                table[link.index] = Session(connection: connection, spec: spec)
            }
        }
        // Ctrl-C while connecting: end the job as soon as it exists.
        if isInterrupted { perform(policy.withLock { $0.cancel(reason: "interrupted by the user") }) }
        let progress = startProgress()
        // Every job description goes out from this thread before any serve thread is made: a
        // new thread may take the core (made one after another, the last workers' descriptions
        // waited for the threads before theirs), and workers prepare while the threads start.
        let started = links.compactMap { link in sessions.withLock { $0[link.index] }.map { (link.index, $0) } }
        for (worker, session) in started {
            perform(worker: worker, session: session, session.machine.withLock { $0.start() }, sources: sources)
        }
        for (worker, session) in started {
            Threads.start(name: "distr-serve") { [self] in serve(worker: worker, session: session, sources: sources) }
        }

        if !stdinRanks.isEmpty {
            let workerOfRank = Dictionary(uniqueKeysWithValues: links.flatMap { link in link.ranks.map { ($0, link.index) } })
            Threads.start(name: "distr-stdin") { [self] in forwardStdin(to: stdinRanks, workerOfRank: workerOfRank) }
        }

        var timedOut = false
        if !waitAllFinished(until: options.timeout.map { .after($0) } ?? .never) {
            timedOut = true
            perform(policy.withLock { $0.cancel(reason: "the job's time limit of \(options.timeout ?? 0) s passed") })
            waitAllFinished(until: .after(options.grace + 5))
        }
        closeAll()
        printer.attach(nil)
        progress?.stop()
        let names = Dictionary(uniqueKeysWithValues: placements.map { ($0.rank, $0.label) })
        if let capture {
            capture.finish(policy: policy.withLock { $0 }, ranksOfWorker: ranksOfWorker)
            return isInterrupted ? ExitCode.interrupted : ExitCode.ok
        }
        printer.finish(ranks: placements.map(\.rank), names: names)
        let summary = JobSummary(
            policy: policy.withLock { $0 }, rankCount: rankCount,
            nodes: links.map { (label: $0.peer.label, ranks: $0.ranks) }, names: names, quiet: options.quiet,
            interrupted: isInterrupted, timeLimit: timedOut ? options.timeout : nil, elapsed: Clock.now - startTime)
        for line in summary.lines { note(line) }
        return summary.status
    }

    /// Waits until every worker has finished or `deadline` passes, relaying the held clean exits
    /// when they are due. On this thread, which waits anyway: a timer of its own (a Dispatch
    /// timer starts Dispatch's threads, an epoll set and an eventfd) would cost a job that ends
    /// within the hold, as most do, more than the rest of its end.
    /// - Returns: whether every worker has finished.
    @discardableResult
    private func waitAllFinished(until deadline: Deadline) -> Bool {
        while !allFinished.isOpen {
            let due = heldExitsDue.withLock { $0 }
            let until = due.map { min($0, deadline) } ?? deadline
            if until.instant == .infinity {
                endOrHold.wait()
            } else if endOrHold.wait(timeout: .now() + until.remaining) == .timedOut {
                let release = heldExitsDue.withLock { due -> Bool in
                    guard let held = due, held.hasPassed else { return false }
                    due = nil
                    return true
                }
                if release { perform(policy.withLock { $0.releaseHeldExits() }) }
                if deadline.hasPassed { return allFinished.isOpen }
            }
        }
        return true
    }

    /// Connects to every worker at once (`Dialer`, from this thread), retrying a busy worker
    /// until the connect timeout.
    /// - Returns: the address each reached worker was reached at, and why the others were not,
    ///   by link index.
    private func connectAll() -> (reached: [Int: String], failures: [Int: String]) {
        var failures: [Int: String] = [:]
        var reached: [Int: String] = [:]
        let dialed = Dialer.dial(links.map(\.peer), secret: secret, timeout: options.connectTimeout, watch: options.nodeTimeout)
        for (link, result) in zip(links, dialed) {
            switch result {
            case .success(let (connection, host)):
                connections.withLock { $0[link.index] = connection }
                reached[link.index] = host
            case .failure(let error):
                let failure = ConnectFailure.classify(error, node: link.peer.label, address: link.peer.description)
                failures[link.index] = failure.kind == "version mismatch" ? failure.message : "node \(link.peer.label): \(failure.message)"
            }
        }
        return (reached, failures)
    }

    /// Connects and authenticates a control connection within `timeout` seconds, retrying a busy
    /// worker. `watch`: the node timeout of the heartbeats (`Liveness`) for a job's connection;
    /// nil for a short exchange such as `status`.
    /// - Returns: the connection and the address the worker was reached at.
    static func connect(_ peer: Peer, secret: [UInt8], timeout: Double, watch: Double? = nil) throws -> (Connection, String) {
        // One peer: the dialer's only result.
        try Dialer.dial([peer], secret: secret, timeout: timeout, watch: watch)[0].get()
    }

    /// Relays what the worker reports until it ends, sending its files when it asks (the job
    /// description went out before: `run`).
    private func serve(worker: Int, session: Session, sources: [BundleSource]) {
        while session.machine.withLock({ $0.state }) != .ended {
            do {
                try session.connection.receiveFrames { type, payload in
                    // Output, the bulk of the traffic, is labelled where it was read.
                    if type == OutputFrame.type, let output = OutputFrame.parse(payload),
                        session.machine.withLock({ $0.acceptsOutput(rank: output.rank) })
                    {
                        deliverOutput(rank: output.rank, stream: output.stream, timestamp: output.timestamp, bytes: output.bytes)
                        return
                    }
                    let message = try session.connection.message(type: type, payload: Array(payload))
                    if message == .workerHeartbeat { return }
                    if case .workerShuttingDown = message {
                        note("node \(links[worker].peer.label): shut down during the job" + (failsJob ? "; ending the job on every node" : ""))
                    }
                    perform(worker: worker, session: session, session.machine.withLock { $0.received(message) }, sources: sources)
                }
            } catch {
                var silent = false
                if case WireError.silent = error {
                    // Frozen or cut off: release a sender blocked towards it (a file upload).
                    session.connection.abort()
                    silent = true
                }
                let actions = session.machine.withLock { $0.connectionEnded("\(error)", silent: silent) }
                for case .finished(_, let why?) in actions {
                    note("node \(links[worker].peer.label): \(why)" + (failsJob ? "; ending the job on every node" : ""))
                }
                perform(worker: worker, session: session, actions, sources: sources)
                break
            }
        }
        session.connection.close()
    }

    /// Whether losing a node ends the job on the others (`run` without `--keep-going`).
    private var failsJob: Bool {
        if case .run = options.mode { return !options.keepGoing }
        return false
    }

    private func perform(worker: Int, session: Session, _ actions: [MasterLinkProtocol.Action], sources: [BundleSource]) {
        for action in actions {
            switch action {
            case .send(let message):
                // A broken connection shows up in the reading loop, which ends this worker.
                session.connection.sendIfConnected(message)
            case .sendFiles(let indices):
                // A cancel (this node lost, or another) stops the upload at the next frame: the
                // cancel is sent under the machine's lock, so it also never waits behind the rest.
                let stop = { session.machine.withLock { $0.isCancelled } }
                do { try sendFiles(indices.map { ($0, sources[$0]) }, over: session.connection, until: stop) } catch {
                    let reason = "\(error)"
                    perform(worker: worker, session: session, session.machine.withLock { $0.deliver(.cancel(reason: reason)) }, sources: sources)
                    perform(worker: worker, session: session, session.machine.withLock { $0.failedLocally(reason) }, sources: sources)
                }
            case .queued(let running, let maxJobs, let holders):
                note(
                    "waiting for node \(links[worker].peer.label): it runs \(running) job(s) (max-jobs \(maxJobs)); started by "
                        + (holders.isEmpty ? "an unknown master" : holders.joined(separator: ", ")))
            case .ready:
                perform(policy.withLock { $0.workerReady(worker) })
            case .output(let rank, let stream, let timestamp, let bytes):
                bytes.withUnsafeBytes { deliverOutput(rank: rank, stream: stream, timestamp: timestamp, bytes: $0) }
            case .rankExited(let rank, let status, let ended):
                perform(policy.withLock { $0.rankExited(worker: worker, rank: rank, status: status, endedByDistr: ended) })
            case .finished(let kept, let error):
                session.connection.close()
                perform(
                    policy.withLock { policy in
                        if let kept { policy.keptDirectory(worker: worker, path: kept) }
                        return policy.workerFinished(worker, error: error)
                    })
            }
        }
    }

    /// Hands a batch of a rank's output to the shell's capture or the printer, and its stderr
    /// to the job policy (for the summary's last lines).
    private func deliverOutput(rank: Int, stream: UInt8, timestamp: UInt64, bytes: UnsafeRawBufferPointer) {
        if let capture {
            capture.append(rank: rank, bytes: Array(bytes))
        } else {
            printer.output(rank: rank, stream: stream, timestamp: timestamp, bytes: bytes)
        }
        if stream == 2 { policy.withLock { $0.output(rank: rank, stream: stream, bytes: Array(bytes)) } }
    }

    /// Carries out the job policy's decisions.
    private func perform(_ actions: [JobPolicy.Action]) {
        for action in actions {
            switch action {
            case .launchAll:
                defer { launched.open() }
                for session in sessions.withLock({ Array($0.values) }) { sendUnderLock(session) { $0.launch() } }
                // A cancel decided while the launches went out (a rank that could not start).
                perform(policy.withLock { $0.launchSent() })
            case .cancelAll(let reason):
                for session in sessions.withLock({ Array($0.values) }) { sendUnderLock(session) { $0.deliver(.cancel(reason: reason)) } }
            case .relayExit(let rank, let code, let workers):
                let table = sessions.withLock { $0 }
                for session in workers.compactMap({ table[$0] }) {
                    sendUnderLock(session) { $0.deliver(.peerExited(rank: rank, status: code)) }
                }
            case .releaseExitsLater:
                heldExitsDue.withLock { $0 = .after(JobPolicy.cleanExitHold) }
                endOrHold.signal()
            case .allFinished:
                allFinished.open()
                endOrHold.signal()
            }
        }
    }

    /// Runs `step` on the session's machine and sends what it decides before releasing the lock.
    private func sendUnderLock(_ session: Session, _ step: (inout MasterLinkProtocol) -> [MasterLinkProtocol.Action]) {
        session.machine.withLock { machine in
            for case .send(let message) in step(&machine) {
                // As in perform: a broken connection shows up in the reading loop.
                session.connection.sendIfConnected(message)
            }
        }
    }

    /// Reads this process's stdin until its end and sends each piece to `ranks`, then the end of
    /// input. Sends block when a worker's connection is full, which paces the reading.
    private func forwardStdin(to ranks: [Int], workerOfRank: [Int: Int]) {
        launched.wait(until: .never)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n: Int
            do { n = try FD.read(0, into: &buffer) } catch {
                note("cannot read stdin (\(error)); the ranks see the end of their input")
                n = 0
            }
            let piece = Array(buffer[0..<n])
            for rank in ranks {
                guard let worker = workerOfRank[rank], let session = sessions.withLock({ $0[worker] }) else { continue }
                sendUnderLock(session) { $0.deliver(.stdinData(rank: rank, bytes: piece)) }
            }
            if n == 0 { return }
        }
    }

    private func closeAll() {
        for connection in connections.withLock({ Array($0.values) }) { connection.close() }
    }

    /// Ctrl-C: the first ends the job on every node; a second gives up waiting.
    package func interrupt() -> Bool {
        let count = interrupted.add(1, ordering: .acquiringAndReleasing).newValue
        if count == 1 {
            note(
                capture == nil
                    ? "interrupted; ending the job on every node (Ctrl-C again to stop waiting)" : "interrupted; ending the command on every node")
            perform(policy.withLock { $0.cancel(reason: "interrupted by the user") })
        }
        return count > 1
    }
}
