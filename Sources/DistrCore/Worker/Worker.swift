import Synchronization

/// The worker daemon: accepts authenticated connections on one port and runs jobs.
///
/// Threads only move bytes: each control connection's thread feeds a `WorkerJobProtocol` and
/// carries out its actions; handshake slots are decided by `HandshakeSlots`.
package final class Worker: Sendable {
    package let configuration: WorkerConfiguration
    private let listener: Int32
    package let address: SocketAddress
    /// Jobs that are ready or running, by id: rank connections find their job here.
    let jobs = Mutex<[String: Job]>([:])
    /// Handshake slots and the socket of each slot's connection (to end a displaced one).
    private let handshakes: Mutex<(slots: HandshakeSlots, sockets: [UInt64: Int32])>
    private let refusalLog = Mutex(LogRateLimiter(burst: 20, interval: 10))
    private let stopping = Atomic<Bool>(false)
    private let acceptLoopDone = Latch()
    /// Shipped files kept by digest (nil: caching off).
    let cache: FileCache?
    /// Records of running jobs, for whoever must clean up after a crash of this worker.
    let records: JobRecords?
    /// Emptied job directories and spent records for the next jobs (nil: none are kept).
    let spares: SpareInodes?
    /// Job cgroups, made and kept under the worker's own (nil: none; the sweep and the records
    /// do the tracking).
    let controlGroups: SpareControlGroups?
    /// The `distr` and `mpi4py` packages for Python ranks (nil: they could not be installed).
    package let pythonModules: PythonModules?
    /// The worker's own helpers (its compile of the Python modules), which a job's sweep must
    /// leave alone.
    private let helpers = HelperProcesses()
    /// Job slots (`--max-jobs`) and the gate each waiting request blocks on.
    private let slots: Mutex<(slots: JobSlots, gates: [UInt64: Latch])>
    let nextSlotRequest = Atomic<UInt64>(1)
    /// Job ids taken by a control connection (see `reserveJobID`).
    private let reservedJobIDs = Mutex<Set<String>>([])

    /// Binds the port. Call `start()` to serve.
    /// - Throws: `SocketError` when the address cannot be bound.
    package init(_ configuration: WorkerConfiguration) throws(SocketError) {
        self.configuration = configuration
        (listener, address) = try TCPSocket.listen(host: configuration.bind, port: configuration.port)
        handshakes = Mutex(
            (
                HandshakeSlots(
                    capacity: configuration.limits.maxPendingHandshakes,
                    perSource: configuration.limits.maxPendingHandshakesPerSource), [:]
            ))
        slots = Mutex((JobSlots(limit: configuration.maxJobs), [:]))
        cache = FileCache(directory: configuration.workDirectory + "/.distr-cache", limit: configuration.cacheBytes)
        let spares: SpareInodes?
        do { spares = try SpareInodes(workDirectory: configuration.workDirectory) } catch {
            // Without a spare area every job makes its directory and record anew, as it always could.
            configuration.log("cannot keep spare job directories in \(configuration.workDirectory)/.distr-spare (\(error)); each job makes its own")
            spares = nil
        }
        self.spares = spares
        do {
            let records = try JobRecords(workDirectory: configuration.workDirectory, spares: spares)
            // What a worker that crashed here left behind: its ranks' processes and directories.
            for line in Reclaimer.reclaimAbandoned(records) { configuration.log(line) }
            self.records = records
        } catch {
            configuration.log(
                "cannot keep job records in \(configuration.workDirectory)/.distr-jobs (\(error)); "
                    + "a crash of this worker will leave its jobs' processes running")
            records = nil
        }
        do {
            let (modules, note) = try PythonModules.install(
                root: configuration.pythonDirectory ?? PythonModules.defaultRoot(workDirectory: configuration.workDirectory), python: nil)
            if let note { configuration.log(note) }
            if modules.lacksBytecode { modules.compileInBackground(log: configuration.log, helpers: helpers) }
            pythonModules = modules
        } catch {
            configuration.log("\(error)")
            pythonModules = nil
        }
        switch configuration.useControlGroups ? ControlGroup.placeForJobs() : .failure(SystemError("--no-cgroups", code: .notPermitted)) {
        case .success(let place):
            // What a worker that is gone left there (job records name only the cgroups of jobs;
            // its kept empty ones are found by name).
            SpareControlGroups.removeLeftovers(under: place)
            controlGroups = SpareControlGroups(place: place)
        case .failure(let why):
            controlGroups = nil
            configuration.log("no cgroup per job (\(why)); jobs' processes are tracked by process group and subreaper instead")
        }
        // Descendants that escape a rank's process group are reparented here, not to init.
        do { try CurrentProcess.becomeChildSubreaper() } catch {
            configuration.log("cannot become a child subreaper (\(error)); escaped processes may outlive their jobs")
        }
        Signals.ignorePipe()
    }

    /// The address to print: the bound host and the real port.
    package var listeningDescription: String {
        address.description
    }

    func log(_ message: String) { configuration.log(message) }

    /// Logs a refused connection, rate-limited: a flood of them must not flood the log.
    private func logRefusal(_ message: String) {
        for line in refusalLog.withLock({ $0.lines(for: message, now: Clock.now) }) { log(line) }
    }

    /// Serves on a dedicated thread.
    package func start() {
        let threadBody: @Sendable () -> Void = { [self] in acceptLoop() }
        Threads.start(name: "distr-accept", threadBody)
    }

    private func acceptLoop() {
        defer { acceptLoopDone.open() }
        while !stopping.load(ordering: .acquiring) {
            let fd: Int32
            do { fd = try TCPSocket.accept(listener) } catch {
                if stopping.load(ordering: .acquiring) { return }
                if error.code.isOutOfDescriptors {
                    logRefusal("accept: \(error); out of descriptors, pausing briefly")
                    Deadline.pause(0.1)
                }
                continue
            }
            let source = TCPSocket.peerAddress(fd)
            let peer = source?.description ?? "unknown peer"
            let host = source?.host ?? "unknown"
            let trusted = isTrusted(host)
            let admission = handshakes.withLock { state -> HandshakeSlots.Admission in
                let admission = state.slots.admit(source: host, trusted: trusted)
                if case .admitted(let ticket, let displaced) = admission {
                    if let displaced, let victim = state.sockets.removeValue(forKey: displaced) {
                        // Wakes the displaced handshake's thread, which then tells its client "busy"
                        // and closes the socket; done under the lock so the descriptor cannot be
                        // closed and reused first.
                        try? Socket.shutdown(victim, .read)  // ENOTCONN: that client has gone already.
                    }
                    state.sockets[ticket] = fd
                }
                return admission
            }
            switch admission {
            case .refused(let reason):
                // A fresh socket's buffer takes the short refusal without blocking.
                try? FD.writeAll(fd, Handshake.Server.refusal(.busy))  // The client has gone: no one to tell.
                FD.close(fd)
                logRefusal("refused connection from \(peer): busy: \(reason)")
            case .admitted(let ticket, _):
                TCPSocket.configure(fd)
                let threadBody: @Sendable () -> Void = { [self] in serve(fd: fd, peer: peer, ticket: ticket) }
                Threads.start(name: "distr-conn", threadBody)
            }
        }
    }

    /// Addresses of running jobs' masters and nodes: their connections are never starved.
    private func isTrusted(_ host: String) -> Bool {
        jobs.withLock { table in table.values.contains { $0.trustedHosts.contains(host) } }
    }

    /// Gives back a handshake slot. False when the slot was displaced (its socket shut down).
    @discardableResult
    func releaseSlot(_ ticket: UInt64) -> Bool {
        handshakes.withLock { state in
            state.slots.release(ticket)
            return state.sockets.removeValue(forKey: ticket) != nil
        }
    }

    /// Authenticates one connection and dispatches it by kind.
    private func serve(fd: Int32, peer: String, ticket: UInt64) {
        let hello: Handshake.Hello
        let keys: SessionKeys
        var replied = false
        do {
            (hello, keys) = try Connection.serverHandshake(
                fd: fd, deadline: .after(configuration.limits.handshakeTimeout), version: configuration.protocolVersion,
                replied: &replied
            ) { hello in
                switch hello.kind {
                case .control: return configuration.secret
                case .rank: return rankKey(context: hello.context)
                }
            }
        } catch {
            let displaced = !releaseSlot(ticket)
            if displaced {
                // A fresh answer fits the socket's buffer; a client that has gone is not told.
                try? FD.writeAll(fd, replied ? [Handshake.Verdict.busy] : Handshake.Server.refusal(.busy))  // Gone: no one to tell.
            }
            FD.close(fd)
            logRefusal("refused connection from \(peer): \(displaced ? "displaced by a newer connection while stalled" : describe(error))")
            return
        }
        guard releaseSlot(ticket) else {
            // Displaced just as it finished: its read side is shut, so it cannot be served.
            try? FD.writeAll(fd, [Handshake.Verdict.busy])  // Gone: no one to tell.
            FD.close(fd)
            logRefusal("refused connection from \(peer): displaced by a newer connection while stalled")
            return
        }
        switch hello.kind {
        case .control: serveControl(fd: fd, peer: peer, keys: keys)
        case .rank: serveRank(fd: fd, peer: peer, context: hello.context)
        }
    }

    private func describe(_ handshakeError: any Error) -> String {
        switch handshakeError {
        case WireError.stalled: "the handshake was not completed within \(configuration.limits.handshakeTimeout) s"
        case WireError.authenticationFailed:
            "the client does not hold this worker's cluster secret (or, for a rank connection, the job's key; or the job is unknown)"
        case WireError.closed: "the client closed the connection during the handshake"
        case WireError.versionMismatch(let theirs, let ours):
            theirs > ours
                ? "version mismatch: its distr speaks protocol \(theirs), this worker speaks \(ours): upgrade distr-worker here"
                : "version mismatch: its distr speaks protocol \(theirs), this worker speaks \(ours): upgrade distr-master there"
        default: "\(handshakeError)"
        }
    }

    /// The key of a ready or running job that runs rank `to` here; nil otherwise (the
    /// handshake then answers exactly as for a wrong key, at once).
    private func rankKey(context: [UInt8]) -> [UInt8]? {
        guard let parsed = RankConnectionContext(decoding: context), let job = jobs.withLock({ $0[parsed.jobID] }),
            job.isLocal(rank: parsed.to)
        else {
            return nil
        }
        return job.spec.jobKey
    }

    private func serveRank(fd: Int32, peer: String, context: [UInt8]) {
        defer { FD.close(fd) }
        guard let parsed = RankConnectionContext(decoding: context), let job = jobs.withLock({ $0[parsed.jobID] }) else { return }
        let (jobID, from, to) = (parsed.jobID, parsed.from, parsed.to)
        do {
            // Every worker has the job before any starts its ranks, but this one may not have
            // spawned them yet. The target rank holds the socket before the dialer may send.
            guard job.waitStarted(until: .after(configuration.limits.handshakeTimeout)) else {
                throw WireError.refused("rank \(to) has not started")
            }
            let answers = try job.deliverIncoming(fd: fd, from: from, to: to)
            try FD.writeAll(fd, [answers ? Handshake.Verdict.acceptedAnswering : Handshake.Verdict.accepted])
        } catch {
            log("job \(jobID): connection from rank \(from) (\(peer)) to rank \(to) dropped: \(error)")
        }
    }

    /// Runs one job's control connection: feeds the job protocol with what the master sends and
    /// carries out its actions, until the job has ended and the master has closed.
    private func serveControl(fd: Int32, peer: String, keys: SessionKeys) {
        let connection: Connection
        do {
            connection = try Connection.accept(
                fd: fd, peer: peer, keys: keys, limits: configuration.limits, headerOnlyTypes: [ControlMessage.fileDataType])
        } catch {
            FD.close(fd)
            log("connection from \(peer) lost before it started: \(error)")
            return
        }
        connection.watch(timeout: configuration.masterTimeout, heartbeatType: ControlMessage.workerHeartbeatType)
        let session = ControlSession(worker: self, connection: connection, masterHost: TCPSocket.peerAddress(fd)?.host ?? "")
        session.run()
    }

    /// Takes a job slot for request `id`, waiting (after `queued` is told who holds them) while
    /// `--max-jobs` are running. `gaveUp` is asked a few times a second while waiting: a master
    /// that left gives its place in the queue back at once, not when its turn would have come.
    /// - Returns: false when `gaveUp` said so (no slot is held then).
    func acquireSlot(
        id: UInt64, master: String, queued: (_ running: Int, _ holders: [String]) -> Void, gaveUp: () -> Bool
    ) -> Bool {
        let (admission, gate) = slots.withLock { state -> (JobSlots.Admission, Latch?) in
            let admission = state.slots.request(id: id, master: master)
            guard case .queued = admission else { return (admission, nil) }
            let gate = Latch()
            state.gates[id] = gate
            return (admission, gate)
        }
        guard case .queued(let running, let holders) = admission, let gate else { return true }
        queued(running, holders)
        while !gate.wait(until: .after(0.2)) {
            if gaveUp() {
                releaseSlot(id: id)
                // Granted just before the release, the slot went back with it.
                return false
            }
        }
        return true
    }

    /// Gives back request `id`'s slot (or place in the queue); later calls do nothing.
    func releaseSlot(id: UInt64) {
        let gates = slots.withLock { state in
            state.gates[id] = nil
            return state.slots.release(id: id).compactMap { state.gates.removeValue(forKey: $0) }
        }
        for gate in gates { gate.open() }
    }

    /// What `distr-master status` is told.
    func statusReport(master: String, receivedAt: UInt64) -> StatusReport {
        let (system, machine) = SystemFacts.uname
        return StatusReport(
            distrVersion: DistrVersion.string, protocolVersion: configuration.protocolVersion, hostName: SystemFacts.hostName,
            operatingSystem: system, architecture: machine, cores: SystemFacts.cores,
            loadMilli: SystemFacts.loadAverages.map { Int(($0 * 1000).rounded()) }, freeMemoryBytes: SystemFacts.availableMemoryBytes,
            workDirectory: configuration.workDirectory, freeDiskBytes: SystemFacts.freeDiskBytes(configuration.workDirectory),
            runningJobs: slots.withLock { $0.slots.running }, maxJobs: configuration.maxJobs ?? 0, masterAddress: master,
            receivedAt: receivedAt, sentAt: Clock.wallNanoseconds)
    }

    /// Writes (or updates) the job's record, so that a crash of this worker can be cleaned up.
    func record(_ job: Job) {
        guard let records else { return }
        var record = JobRecord(
            jobID: job.spec.jobID, directory: job.directory, workerPID: CurrentProcess.id, workerStart: ProcessTable.ownStartTime)
        record.processGroups = job.processGroups
        record.controlGroup = job.controlGroup?.path
        // Under the jobs lock, and only while the job is registered: a job that finishes is
        // unregistered before its record is removed, so an update racing its end (a rank that
        // exits at once) cannot bring the record back.
        let failure = jobs.withLock { table -> SystemError? in
            guard table[job.spec.jobID] === job else { return nil }
            do throws(SystemError) { try records.write(record) } catch { return error }
            return nil
        }
        if let failure {
            log("job \(job.spec.jobID): cannot write its record (\(failure)); a crash of this worker would leave it running")
        }
    }

    /// Ends what is left of a finished job: processes that left their rank's process group
    /// (setsid, double fork, env -i) stayed in the job's cgroup, or, without one, were
    /// reparented here, the child subreaper.
    func sweep(_ job: Job) {
        if let group = job.controlGroup {
            // Removed, it held no process: every descendant of the ranks is born in it and
            // stays (only a move by root takes one out). The look through this worker's
            // children (/proc/self/task/*/children, an open and a read per thread) is the
            // fallback, for a job without a cgroup or one that would not empty.
            if controlGroups?.release(group) == true { return }
            log("job \(job.spec.jobID): its cgroup \(group.path) could not be emptied and removed")
        }
        var record = JobRecord(jobID: job.spec.jobID, directory: job.directory, workerPID: CurrentProcess.id, workerStart: 0)
        record.processGroups = job.processGroups
        // With no other job running, every child of the worker but its sentinel came from this job.
        let soleJob = jobs.withLock { $0.count == 1 }
        let sentinel = configuration.sentinel
        // The sentinel is the worker's own: not looked at (its /proc files cost a job three opens).
        let killed = Reclaimer.killAll(of: record, among: { helpers.excluded(from: ProcessTable.children().filter { $0 != sentinel }) }) { _ in
            soleJob
        }
        if killed > 0 { log("job \(job.spec.jobID): ended \(killed) process(es) that outlived their rank") }
    }

    func unregister(_ job: Job) {
        jobs.withLock { table in
            if table[job.spec.jobID] === job { table[job.spec.jobID] = nil }
        }
    }

    /// Removes a job's directory, logging what could not be removed; an empty one is kept for the
    /// next job (see `SpareInodes`).
    func removeJobDirectory(_ directory: String, jobID: String) {
        if spares?.keepDirectory(directory) == true { return }
        let report = FileIO.removeTree(directory)
        if !report.isComplete { log("job \(jobID): \(report)") }
    }

    /// Checks what the job description says about itself before anything is created from it.
    static func validate(_ spec: JobSpec) throws(WireError) {
        let allowed = spec.jobID.utf8.allSatisfy { c in
            (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c) || c == 45 || c == 95
        }
        guard !spec.jobID.isEmpty, spec.jobID.utf8.count <= 64, allowed else {
            throw .refused("malformed job id (expected 1 to 64 letters, digits, '-' or '_')")
        }
        guard !spec.arguments.isEmpty, !spec.localRanks.isEmpty else { throw .refused("the job has no command or no ranks") }
        guard spec.placements.map(\.rank) == Array(0..<spec.placements.count),
            Set(spec.localRanks).count == spec.localRanks.count,
            spec.localRanks.allSatisfy({ (0..<spec.placements.count).contains($0) })
        else {
            throw .refused("the job's rank numbers are inconsistent")
        }
    }

    /// A fresh name for a job's directory, the one mkdtemp would make: `WORKDIR/distr-JOBID-`
    /// and 6 random letters and digits. Chosen before the directory is made, so that the job's
    /// record can name it first (see `ControlSession.prepare`).
    func jobDirectoryName(jobID: String) -> String {
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
        let suffix = String(decoding: randomBytes(6).map { letters[Int($0) % letters.count] }, as: UTF8.self)
        return "\(configuration.workDirectory)/distr-\(jobID.prefix(12))-\(suffix)"
    }

    /// Makes a job's directory at `path` (mode 0700, as mkdtemp does), from a spare when one is
    /// kept (see `SpareInodes`).
    /// - Returns: false when something is at `path` already (the caller picks another name).
    func makeJobDirectory(at path: String) throws(SystemError) -> Bool {
        if spares?.takeDirectory(to: path) == true { return true }
        return try FileIO.makeNewDirectory(path, mode: 0o700)
    }

    /// Takes `jobID` for one control connection until `releaseJobID`: two masters (or one
    /// master twice) cannot prepare jobs of one id at once, which would share its record and
    /// its cgroup (both are named by the id).
    /// - Returns: false when the id is taken (a job of that id is being prepared or runs here).
    func reserveJobID(_ jobID: String) -> Bool {
        reservedJobIDs.withLock { $0.insert(jobID).inserted }
    }

    func releaseJobID(_ jobID: String) {
        _ = reservedJobIDs.withLock { $0.remove(jobID) }
    }

    /// Writes the record of a job being prepared, before its directory and cgroup exist: a crash
    /// of this worker from then on (while files arrive, around `jobReady`, once ranks run) leaves
    /// nothing that no record names. The ranks' process groups are added once they run.
    func recordPrepared(jobID: String, directory: String, controlGroup: String?) {
        guard let records else { return }
        var record = JobRecord(jobID: jobID, directory: directory, workerPID: CurrentProcess.id, workerStart: ProcessTable.ownStartTime)
        record.controlGroup = controlGroup
        do throws(SystemError) { try records.write(record) } catch {
            log("job \(jobID): cannot write its record (\(error)); a crash of this worker would leave it running")
        }
    }

    /// Graceful shutdown: stop accepting, end every job (TERM, grace, KILL), remove their
    /// directories. Returns when all jobs are gone or the bound passes.
    package func shutdown() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // shutdown() wakes a thread blocked in accept() on Linux; close() alone would not.
        try? Socket.shutdown(listener, .both)  // Cannot fail on a listening socket that is still open.
        acceptLoopDone.wait()
        FD.close(listener)
        let running = jobs.withLock { Array($0.values) }
        // Each master hears why before its ranks' exits arrive (a write bounded by TCP_USER_TIMEOUT
        // and the heartbeat thread when the master is gone).
        for job in running { job.connection.sendIfConnected(.workerShuttingDown(reason: "the worker is shutting down")) }
        for job in running { job.cancel(reason: "the worker is shutting down") }
        let deadline = Deadline.after(configuration.grace + 5)
        for job in running { job.waitFinished(until: deadline) }
        spares?.removeAll()
        controlGroups?.removeAll()
    }
}
