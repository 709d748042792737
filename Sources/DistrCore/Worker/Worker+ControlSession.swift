import Synchronization

extension Worker {
    /// The state of one control connection while its thread runs it.
    final class ControlSession: Sendable {
        let worker: Worker
        let connection: Connection
        let masterHost: String
        let machine = Mutex(WorkerJobProtocol())
        /// This connection's request for a job slot.
        let slotRequest: UInt64
        /// What preparation made: the job id this connection holds (see `Worker.reserveJobID`),
        /// whether its record was written, the directory, the cgroup, the extractor, the job once
        /// registered, and the latest status change the cache noted for a file it shares with
        /// the job.
        let prepared = Mutex<
            (
                spec: JobSpec?, reservedID: String?, recorded: Bool, directory: String?, controlGroup: OpenControlGroup?,
                extractor: BundleExtractor?, job: Job?, cachedFiles: Int, sharedChange: Int64, shared: [(path: String, digest: [UInt8])]
            )
        >((nil, nil, false, nil, nil, nil, nil, 0, 0, []))
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
                do {
                    // Frames are handled where they were read: file bytes go from the receive
                    // buffer to their files without a copy into a message.
                    try connection.receiveFrames(idle: state == .awaitingJob ? jobDeadline : .never) { type, payload in
                        if type == ControlMessage.fileDataType {
                            for action in machine.withLock({ $0.received(.fileData([])) }) {
                                if case .writeFiles = action { writeFiles(payload) } else { perform(action) }
                            }
                            return
                        }
                        let message = try connection.message(type: type, payload: Array(payload))
                        if message != .heartbeat { perform(machine.withLock { $0.received(message) }) }
                    }
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
            // A job that never started is gone by now (abandoned): its id is free again. One
            // that started releases it when it ends.
            if let reserved = prepared.withLock({ $0.reservedID }) { worker.releaseJobID(reserved) }
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
                let maxJobs = worker.configuration.maxJobs ?? 0
                let acquired = worker.acquireSlot(
                    id: slotRequest, master: connection.peer,
                    queued: { running, holders in
                        worker.log(
                            "job \(spec.jobID) from \(connection.peer) waits: \(running) job(s) running (max-jobs \(maxJobs)), started by \(holders.joined(separator: ", "))"
                        )
                        connection.sendIfConnected(.jobQueued(running: running, maxJobs: maxJobs, holders: holders))
                    }, gaveUp: { connection.peerHasLeft })
                guard acquired else {
                    worker.log("job \(spec.jobID) from \(connection.peer): its master left while the job waited for a slot")
                    perform(machine.withLock { $0.connectionEnded("the master left while the job waited for a slot") })
                    return
                }
                do {
                    let (needed, complete) = try prepare(spec)
                    perform(machine.withLock { $0.prepared(needed: needed, hasManifest: !spec.manifest.isEmpty, complete: complete) })
                } catch {
                    perform(machine.withLock { $0.failed("\(error)") })
                }
            case .writeFiles(let bytes):
                bytes.withUnsafeBytes { writeFiles($0) }
            case .checkDigests(let digests):
                fillFiles { extractor throws(BundleError) in try extractor.checkDigests(digests) }
            case .register:
                do { try register() } catch { perform(machine.withLock { $0.failed("\(error)") }) }
            case .send(let message):
                // A failed send means the connection is gone; the reading loop sees that and
                // ends the job through the protocol.
                connection.sendIfConnected(message)
            case .startRanks:
                guard let (job, sharedChange) = prepared.withLock({ state in state.job.map { ($0, state.sharedChange) } }) else { return }
                // A rank's write to a file it shares with the cache must move the file's
                // status-change time past the one the cache noted (see `FileCache`): that is only
                // sure once the file-time clock has ticked past it. The launch round trip has
                // usually taken longer already.
                FileCache.waitUntilSettled(sharedChange)
                // From here the job's end releases its id (`onFinish`), not this session's: the
                // session may end while ranks still run (they outlived the bound), and a job of
                // the same id must not be prepared beside them (same record, same cgroup).
                prepared.withLock { $0.reservedID = nil }
                job.start()
                // The record gains the ranks' process groups, for whoever cleans up after a crash
                // of this worker. A job in a cgroup is ended through the cgroup, which the record
                // names already; skipping the rewrite spares a file (an inode) per job.
                if job.controlGroup == nil { worker.record(job) }
            case .relayPeerExit(let rank, let status):
                prepared.withLock { $0.job }?.relayPeerExit(rank: rank, status: status)
            case .writeStdin(let rank, let bytes):
                prepared.withLock { $0.job }?.writeStdin(rank: rank, bytes: bytes)
            case .cancel(let reason):
                prepared.withLock { $0.job }?.cancel(reason: reason)
            case .abandon(let reason, let isError):
                let (spec, recorded, directory, controlGroup, job, shared) = prepared.withLock { state in
                    defer {
                        state.extractor = nil
                        // Never started: nothing to wait for at the session's end.
                        state.job = nil
                    }
                    return (
                        state.spec, state.recorded, state.directory, state.controlGroup, state.job, state.extractor?.sharedFiles ?? state.shared
                    )
                }
                if let job {
                    worker.unregister(job)
                    job.discard()
                }
                if let controlGroup, worker.controlGroups?.release(controlGroup) != true {
                    worker.log("job \(spec?.jobID ?? "?"): its cgroup \(controlGroup.path) could not be emptied and removed")
                }
                if let directory {
                    worker.cache?.takeBack(shared, from: directory)
                    worker.removeJobDirectory(directory, jobID: spec?.jobID ?? "?")
                }
                // Last: the record names what is removed above until it is gone.
                if recorded, let spec { worker.records?.remove(spec.jobID) }
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

        /// Writes the next bytes of the file stream (`writeFiles`) and reports the outcome to the machine.
        private func writeFiles(_ bytes: UnsafeRawBufferPointer) {
            fillFiles { extractor throws(BundleError) in try extractor.write(bytes) }
        }

        /// Gives the extractor the next part of the stream (bytes, or digests that follow files)
        /// and reports the outcome to the machine.
        private func fillFiles(_ step: (BundleExtractor) throws(BundleError) -> Void) {
            // The extractor is used only here, on this connection's thread, inside the lock.
            let written = prepared.withLock { state -> Result<Bool, BundleError> in
                guard let extractor = state.extractor else { return .failure(.unexpectedData) }
                return Result { () throws(BundleError) in
                    try step(extractor)
                    return extractor.isComplete
                }
            }
            switch written {
            case .success(let complete): perform(machine.withLock { $0.filesWritten(complete: complete) })
            case .failure(let error): perform(machine.withLock { $0.failed("\(error)") })
            }
        }

        /// Checks the description and makes the job's directory, with cached files in place.
        /// - Returns: the manifest indices the master must send, and whether none are left.
        private func prepare(_ spec: JobSpec) throws -> (needed: [Int], complete: Bool) {
            try Worker.validate(spec)
            try BundlePath.validate(manifest: spec.manifest, limits: worker.configuration.limits)
            guard worker.reserveJobID(spec.jobID) else { throw WireError.refused("job \(spec.jobID) is already running here") }
            prepared.withLock {
                $0.spec = spec
                $0.reservedID = spec.jobID
            }
            // The record comes first, naming the directory and the cgroup before they exist: a
            // crash of this worker at any later point (files arriving, jobReady sent, ranks
            // running) leaves nothing that the next worker on this directory, or the sentinel,
            // cannot find and end.
            // The cgroup is taken first (a kept one, or a new one: `SpareControlGroups`); one
            // that a crash leaves before its job's record names it is found by its name.
            var controlGroup: OpenControlGroup?
            if let groups = worker.controlGroups {
                do { controlGroup = try groups.take() } catch {
                    worker.log("job \(spec.jobID): cannot make its cgroup (\(error)); tracking its processes without it")
                }
            }
            prepared.withLock { $0.controlGroup = controlGroup }
            var directory: String
            repeat {
                directory = worker.jobDirectoryName(jobID: spec.jobID)
                worker.recordPrepared(jobID: spec.jobID, directory: directory, controlGroup: controlGroup?.path)
                prepared.withLock { $0.recorded = true }
            } while !(try worker.makeJobDirectory(at: directory))
            prepared.withLock { $0.directory = directory }
            // Files the cache has (verified against their digests) are copied in now; the
            // master sends only the others.
            let cache = worker.cache
            let extractor = try BundleExtractor(
                directory: directory, manifest: spec.manifest, limits: worker.configuration.limits, cache: cache
            ) {
                cache?.store(directory + "/" + $0.path, entry: $0, file: $1)
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
            let (spec, directory, controlGroup, cachedFiles) = prepared.withLock { state in
                defer { state.extractor = nil }
                state.sharedChange = state.extractor?.latestSharedChange ?? 0
                state.shared = state.extractor?.sharedFiles ?? []
                return (state.spec, state.directory, state.controlGroup, state.cachedFiles)
            }
            guard let spec, let directory else { throw WireError.refused("no job to register") }
            let job = Job(
                spec: spec, directory: directory, connection: connection, master: masterHost, controlGroup: controlGroup,
                grace: worker.configuration.grace, pythonModules: worker.pythonModules, log: worker.configuration.log
            ) { [self] finished in
                worker.sweep(finished)
                worker.unregister(finished)
                if !finished.spec.keepDirectory {
                    worker.cache?.takeBack(prepared.withLock { $0.shared }, from: finished.directory)
                    worker.removeJobDirectory(finished.directory, jobID: finished.spec.jobID)
                }
                worker.records?.remove(finished.spec.jobID)
                worker.releaseJobID(finished.spec.jobID)
                worker.releaseSlot(id: slotRequest)
                perform(machine.withLock { $0.ranksFinished() })
            }
            let added = worker.jobs.withLock { table -> Bool in
                if table[spec.jobID] != nil { return false }
                table[spec.jobID] = job
                return true
            }
            // The id is this connection's (`reserveJobID`): no other job can hold it.
            guard added else { throw WireError.refused("job \(spec.jobID) is already running here") }
            prepared.withLock { $0.job = job }
            // The record, written in `prepare`, names the directory and the cgroup already.
            try connection.send(.jobReady(directory: directory))
            worker.log(
                "job \(spec.jobID) from \(connection.peer): \(spec.localRanks.count) rank(s) of \(spec.nodeCount), \(spec.manifest.count) file(s) (\(cachedFiles) from cache): \(spec.arguments.joined(separator: " "))"
            )
        }
    }
}
