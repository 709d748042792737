import Synchronization

/// How a worker runs.
package struct WorkerConfiguration: Sendable {
    package var bind: String = "0.0.0.0"
    package var port: Int = Peer.defaultPort
    package var secret: [UInt8]
    package var workDirectory: String
    package var limits = Limits()
    /// Seconds between SIGTERM and SIGKILL when a job is ended.
    package var grace: Double = 2
    /// The lease: seconds the master may be silent (no heartbeat) before its job is ended.
    package var masterTimeout: Double = Liveness.defaultTimeout
    /// Bytes of shipped files kept by digest for later jobs (0: no cache).
    package var cacheBytes = 1 << 30
    /// Track jobs' processes with a cgroup per job where one can be made.
    package var useControlGroups = true
    /// The worker's sentinel process (see `Sentinel`), which job sweeps must spare.
    package var sentinel: Int32?
    /// Jobs run at once (`--max-jobs`); a job over the bound waits for a slot. nil: no bound.
    package var maxJobs: Int?
    /// The protocol version this worker advertises: `Handshake.version`, except in tests of
    /// version mismatch (`DISTR_TEST_PROTOCOL_VERSION`, read by `distr-worker` only).
    package var protocolVersion: UInt16 = Handshake.version
    package var log: @Sendable (String) -> Void

    package init(secret: [UInt8], workDirectory: String, log: @escaping @Sendable (String) -> Void) {
        self.secret = secret
        self.workDirectory = workDirectory
        self.log = log
    }
}

/// The worker daemon: accepts authenticated connections on one port and runs jobs.
///
/// Threads only move bytes: each control connection's thread feeds a `WorkerJobProtocol` and
/// carries out its actions; handshake slots are decided by `HandshakeSlots`.
package final class Worker: Sendable {
    package let configuration: WorkerConfiguration
    private let listener: Int32
    package let address: SocketAddress
    /// Jobs that are ready or running, by id: rank connections find their job here.
    private let jobs = Mutex<[String: Job]>([:])
    /// Handshake slots and the socket of each slot's connection (to end a displaced one).
    private let handshakes: Mutex<(slots: HandshakeSlots, sockets: [UInt64: Int32])>
    private let refusalLog = Mutex(LogRateLimiter(burst: 20, interval: 10))
    private let stopping = Atomic<Bool>(false)
    private let acceptLoopDone = Latch()
    /// Shipped files kept by digest (nil: caching off).
    private let cache: FileCache?
    /// Records of running jobs, for whoever must clean up after a crash of this worker.
    private let records: JobRecords?
    /// Where job cgroups are made (nil: none; the sweep and the records do the tracking).
    private let controlGroups: String?
    /// The `distr` and `mpi4py` packages for Python ranks (nil: they could not be installed).
    package let pythonModules: PythonModules?
    /// Job slots (`--max-jobs`) and the gate each waiting request blocks on.
    private let slots: Mutex<(slots: JobSlots, gates: [UInt64: Latch])>
    private let nextSlotRequest = Atomic<UInt64>(1)

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
        do {
            let records = try JobRecords(workDirectory: configuration.workDirectory)
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
            let (modules, note) = try PythonModules.install(in: configuration.workDirectory)
            if let note { configuration.log(note) }
            pythonModules = modules
        } catch {
            configuration.log("\(error)")
            pythonModules = nil
        }
        switch configuration.useControlGroups ? ControlGroup.placeForJobs() : .failure(SystemError("--no-cgroups", code: .notPermitted)) {
        case .success(let place): controlGroups = place
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

    private func log(_ message: String) { configuration.log(message) }

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
                        // Wakes the displaced handshake's thread, which then closes its socket;
                        // done under the lock so the descriptor cannot be closed and reused first.
                        try? Socket.shutdown(victim, .both)  // ENOTCONN: that client has gone already.
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
    private func releaseSlot(_ ticket: UInt64) -> Bool {
        handshakes.withLock { state in
            state.slots.release(ticket)
            return state.sockets.removeValue(forKey: ticket) != nil
        }
    }

    /// Authenticates one connection and dispatches it by kind.
    private func serve(fd: Int32, peer: String, ticket: UInt64) {
        let hello: Handshake.Hello
        let keys: SessionKeys
        do {
            (hello, keys) = try Connection.serverHandshake(
                fd: fd, deadline: .after(configuration.limits.handshakeTimeout), version: configuration.protocolVersion
            ) { hello in
                switch hello.kind {
                case .control: return configuration.secret
                case .rank: return rankKey(context: hello.context)
                }
            }
        } catch {
            let displaced = !releaseSlot(ticket)
            FD.close(fd)
            logRefusal("refused connection from \(peer): \(displaced ? "displaced by a newer connection while stalled" : describe(error))")
            return
        }
        releaseSlot(ticket)
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
            try job.deliverIncoming(fd: fd, from: from, to: to)
            try FD.writeAll(fd, [1])
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

    /// The state of one control connection while its thread runs it.
    private final class ControlSession: Sendable {
        let worker: Worker
        let connection: Connection
        let masterHost: String
        let machine = Mutex(WorkerJobProtocol())
        /// This connection's request for a job slot.
        let slotRequest: UInt64
        /// What preparation made: the directory, the extractor, the job once registered.
        let prepared = Mutex<(spec: JobSpec?, directory: String?, extractor: BundleExtractor?, job: Job?, cachedFiles: Int)>(
            (nil, nil, nil, nil, 0))
        let ended = Latch()

        init(worker: Worker, connection: Connection, masterHost: String) {
            self.worker = worker
            self.connection = connection
            self.masterHost = masterHost
            slotRequest = worker.nextSlotRequest.add(1, ordering: .relaxed).newValue
        }

        func run() {
            // A master has a bounded time to describe its job (heartbeats do not extend it); a
            // running job may be quiet for as long as it runs, while the master's heartbeats
            // arrive (the lease, see `Liveness`).
            let jobDeadline = Deadline.after(worker.configuration.limits.frameTimeout)
            while true {
                let state = machine.withLock { $0.state }
                if state == .ended { break }
                let message: ControlMessage
                do {
                    message = try connection.receiveMessage(idle: state == .awaitingJob ? jobDeadline : .never)
                    if message == .heartbeat { continue }
                } catch {
                    let closed = error as? WireError == .closed
                    if case WireError.silent = error {
                        // The master is gone, frozen or cut off: writers blocked towards it are
                        // released, and no one is left to tell.
                        connection.abort()
                        worker.log("job from \(connection.peer): the master \(error); ending the job (the lease)")
                    } else if !closed {
                        // Tell the master why before letting go; it may be gone already.
                        connection.sendIfConnected(.failure("\(error)"))
                    }
                    perform(machine.withLock { $0.connectionEnded(closed ? "closed" : "\(error)") })
                    break
                }
                perform(machine.withLock { $0.received(message) })
            }
            let job = prepared.withLock { $0.job }
            if let job {
                let bound = worker.configuration.grace + 10
                if !job.waitFinished(until: .after(bound)) {
                    worker.log("job \(job.spec.jobID): ranks still running \(bound) s after the end was requested")
                }
                // The master reads jobEnded, then end of stream, and closes: wait for that
                // (bounded) so the master is not cut off before it has read everything. Its
                // heartbeats keep coming meanwhile: read past them, or closing with them unread
                // would reset the connection and could discard output the master has not read.
                let drained = Deadline.after(5)
                while true {
                    do { _ = try connection.receive(idle: drained) } catch { break }  // End of stream or the bound: the job is over either way.
                }
            }
            connection.close()
            worker.releaseSlot(id: slotRequest)
            if let job {
                // Logged last, once every resource of the job is released (tests wait for this line).
                worker.log(
                    "job \(job.spec.jobID): finished" + (job.spec.keepDirectory ? ", directory kept at \(job.directory)" : ""))
            }
        }

        func perform(_ actions: [WorkerJobProtocol.Action]) {
            for action in actions { perform(action) }
        }

        private func perform(_ action: WorkerJobProtocol.Action) {
            switch action {
            case .prepare(let spec):
                worker.acquireSlot(id: slotRequest, master: connection.peer) { running, holders in
                    worker.log(
                        "job \(spec.jobID) from \(connection.peer) waits: \(running) job(s) running (max-jobs \(running)), started by \(holders.joined(separator: ", "))"
                    )
                    connection.sendIfConnected(.jobQueued(running: running, maxJobs: worker.configuration.maxJobs ?? 0, holders: holders))
                }
                do {
                    let (needed, complete) = try prepare(spec)
                    perform(machine.withLock { $0.prepared(needed: needed, hasManifest: !spec.manifest.isEmpty, complete: complete) })
                } catch {
                    perform(machine.withLock { $0.failed("\(error)") })
                }
            case .writeFiles(let bytes):
                // The extractor is used only here, on this connection's thread, inside the lock.
                let written = prepared.withLock { state -> Result<Bool, BundleError> in
                    guard let extractor = state.extractor else { return .failure(.unexpectedData) }
                    return Result { () throws(BundleError) in
                        try extractor.write(bytes)
                        return extractor.isComplete
                    }
                }
                switch written {
                case .success(let complete): perform(machine.withLock { $0.filesWritten(complete: complete) })
                case .failure(let error): perform(machine.withLock { $0.failed("\(error)") })
                }
            case .register:
                do { try register() } catch { perform(machine.withLock { $0.failed("\(error)") }) }
            case .send(let message):
                // A failed send means the connection is gone; the reading loop sees that and
                // ends the job through the protocol.
                connection.sendIfConnected(message)
            case .startRanks:
                guard let job = prepared.withLock({ $0.job }) else { return }
                job.start()
                worker.record(job)
            case .relayPeerExit(let rank, let status):
                prepared.withLock { $0.job }?.relayPeerExit(rank: rank, status: status)
            case .writeStdin(let rank, let bytes):
                prepared.withLock { $0.job }?.writeStdin(rank: rank, bytes: bytes)
            case .cancel(let reason):
                prepared.withLock { $0.job }?.cancel(reason: reason)
            case .abandon(let reason, let isError):
                let (spec, directory, job) = prepared.withLock { state in
                    defer { state.extractor = nil }
                    return (state.spec, state.directory, state.job)
                }
                if let job {
                    worker.unregister(job)
                    job.controlGroup?.killAndRemove()
                    worker.records?.remove(job.spec.jobID)
                }
                if let directory { worker.removeJobDirectory(directory, jobID: spec?.jobID ?? "?") }
                worker.releaseSlot(id: slotRequest)
                if isError || spec != nil {
                    worker.log("job \(spec?.jobID ?? "?") from \(connection.peer) \(isError ? "refused" : "not started"): \(reason)")
                }
            case .reportStatus:
                let receivedAt = Clock.wallNanoseconds
                // As for .send: a broken connection is seen by the reading loop.
                connection.sendIfConnected(.statusReport(worker.statusReport(master: connection.peer, receivedAt: receivedAt)))
                connection.finishSending()
            case .reportEnd:
                let job = prepared.withLock { $0.job }
                // As for .send: a broken connection is seen by the reading loop.
                connection.sendIfConnected(.jobEnded(keptDirectory: job?.spec.keepDirectory == true ? job?.directory : nil))
                connection.finishSending()
            }
        }

        /// Checks the description and makes the job's directory, with cached files in place.
        /// - Returns: the manifest indices the master must send, and whether none are left.
        private func prepare(_ spec: JobSpec) throws -> (needed: [Int], complete: Bool) {
            try Worker.validate(spec)
            try BundlePath.validate(manifest: spec.manifest, limits: worker.configuration.limits)
            if worker.jobs.withLock({ $0[spec.jobID] }) != nil { throw WireError.refused("job \(spec.jobID) is already running here") }
            let directory = try worker.makeJobDirectory(jobID: spec.jobID)
            prepared.withLock {
                $0.spec = spec
                $0.directory = directory
            }
            // Files the cache has (verified against their digests) are copied in now; the
            // master sends only the others.
            let cache = worker.cache
            let extractor = try BundleExtractor(
                directory: directory, manifest: spec.manifest, limits: worker.configuration.limits, cache: cache
            ) {
                cache?.store(directory + "/" + $0.path, entry: $0)
            }
            let needed = extractor.streamedIndices
            let complete = extractor.isComplete
            prepared.withLock {
                $0.extractor = extractor
                $0.cachedFiles = extractor.cachedCount
            }
            return (needed, complete)
        }

        /// Makes the job known to rank connections, then tells the master it is ready.
        private func register() throws {
            let (spec, directory, cachedFiles) = prepared.withLock { state in
                defer { state.extractor = nil }
                return (state.spec, state.directory, state.cachedFiles)
            }
            guard let spec, let directory else { throw WireError.refused("no job to register") }
            var controlGroup: ControlGroup?
            if let place = worker.controlGroups {
                do { controlGroup = try ControlGroup.create(under: place, name: "distr-\(spec.jobID)-\(CurrentProcess.id)") } catch {
                    worker.log("job \(spec.jobID): cannot make its cgroup (\(error)); tracking its processes without it")
                }
            }
            let job = Job(
                spec: spec, directory: directory, connection: connection, master: masterHost, controlGroup: controlGroup,
                grace: worker.configuration.grace, pythonModules: worker.pythonModules, log: worker.configuration.log
            ) { [self] finished in
                worker.sweep(finished)
                worker.unregister(finished)
                if !finished.spec.keepDirectory { worker.removeJobDirectory(finished.directory, jobID: finished.spec.jobID) }
                worker.records?.remove(finished.spec.jobID)
                worker.releaseSlot(id: slotRequest)
                perform(machine.withLock { $0.ranksFinished() })
            }
            let added = worker.jobs.withLock { table -> Bool in
                if table[spec.jobID] != nil { return false }
                table[spec.jobID] = job
                return true
            }
            guard added else {
                controlGroup?.killAndRemove()
                throw WireError.refused("job \(spec.jobID) is already running here")
            }
            prepared.withLock { $0.job = job }
            worker.record(job)
            try connection.send(.jobReady(directory: directory))
            worker.log(
                "job \(spec.jobID) from \(connection.peer): \(spec.localRanks.count) rank(s) of \(spec.nodeCount), \(spec.manifest.count) file(s) (\(cachedFiles) from cache): \(spec.arguments.joined(separator: " "))"
            )
        }
    }

    /// Takes a job slot for request `id`, waiting (after `queued` is told who holds them) while
    /// `--max-jobs` are running.
    private func acquireSlot(id: UInt64, master: String, queued: (_ running: Int, _ holders: [String]) -> Void) {
        let (admission, gate) = slots.withLock { state -> (JobSlots.Admission, Latch?) in
            let admission = state.slots.request(id: id, master: master)
            guard case .queued = admission else { return (admission, nil) }
            let gate = Latch()
            state.gates[id] = gate
            return (admission, gate)
        }
        if case .queued(let running, let holders) = admission, let gate {
            queued(running, holders)
            gate.wait()
        }
    }

    /// Gives back request `id`'s slot (or place in the queue); later calls do nothing.
    private func releaseSlot(id: UInt64) {
        let gates = slots.withLock { state in
            state.gates[id] = nil
            return state.slots.release(id: id).compactMap { state.gates.removeValue(forKey: $0) }
        }
        for gate in gates { gate.open() }
    }

    /// What `distr-master status` is told.
    private func statusReport(master: String, receivedAt: UInt64) -> StatusReport {
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
    private func record(_ job: Job) {
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
    /// (setsid, double fork, env -i) were reparented here, the child subreaper.
    private func sweep(_ job: Job) {
        if let group = job.controlGroup, !group.killAndRemove() {
            log("job \(job.spec.jobID): its cgroup \(group.path) could not be emptied and removed")
        }
        var record = JobRecord(jobID: job.spec.jobID, directory: job.directory, workerPID: CurrentProcess.id, workerStart: 0)
        record.processGroups = job.processGroups
        // With no other job running, every child of the worker but its sentinel came from this job.
        let soleJob = jobs.withLock { $0.count == 1 }
        let sentinel = configuration.sentinel
        let killed = Reclaimer.killAll(of: record, among: ProcessTable.children) { pid in soleJob && pid != sentinel }
        if killed > 0 { log("job \(job.spec.jobID): ended \(killed) process(es) that outlived their rank") }
    }

    private func unregister(_ job: Job) {
        jobs.withLock { table in
            if table[job.spec.jobID] === job { table[job.spec.jobID] = nil }
        }
    }

    /// Removes a job's directory, logging what could not be removed.
    private func removeJobDirectory(_ directory: String, jobID: String) {
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

    private func makeJobDirectory(jobID: String) throws -> String {
        // mkdtemp creates it with mode 0700.
        do { return try FileIO.makeTemporaryDirectory(template: "\(configuration.workDirectory)/distr-\(jobID.prefix(12))-XXXXXX") } catch {
            throw SystemError("mkdtemp in \(configuration.workDirectory)", errno: error.errno)
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
    }
}
