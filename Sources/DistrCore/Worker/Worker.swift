@preconcurrency import Glibc
import CDistrSys
import Dispatch
import Synchronization

/// How a worker runs.
public struct WorkerConfiguration: Sendable {
    public var bind: String = "0.0.0.0"
    public var port: Int = Peer.defaultPort
    public var secret: [UInt8]
    public var workDirectory: String
    public var limits = Limits()
    /// Seconds between SIGTERM and SIGKILL when a job is ended.
    public var grace: Double = 2
    /// Bytes of shipped files kept by digest for later jobs (0: no cache).
    public var cacheBytes = 1 << 30
    public var log: @Sendable (String) -> Void

    public init(secret: [UInt8], workDirectory: String, log: @escaping @Sendable (String) -> Void) {
        self.secret = secret
        self.workDirectory = workDirectory
        self.log = log
    }
}

/// The worker daemon: accepts authenticated connections on one port and runs jobs.
public final class Worker: Sendable {
    public let configuration: WorkerConfiguration
    private let listener: Int32
    public let address: SocketAddress
    private let jobs = Mutex<[String: Job]>([:])
    /// Rank connections that arrived before their job did (workers get a job at slightly
    /// different times; a fast rank may dial a worker that is still receiving it).
    private let jobArrivals = Mutex<[String: [DispatchSemaphore]]>([:])
    private let pendingHandshakes = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let acceptLoopDone = DispatchSemaphore(value: 0)
    /// Shipped files kept by digest (nil: caching off).
    private let cache: FileCache?

    /// Binds the port. Call `run()` (or `start()`) to serve.
    /// - Throws: `SocketError` when the address cannot be bound.
    public init(_ configuration: WorkerConfiguration) throws(SocketError) {
        self.configuration = configuration
        (listener, address) = try TCPSocket.listen(host: configuration.bind, port: configuration.port)
        cache = FileCache(directory: configuration.workDirectory + "/.distr-cache", limit: configuration.cacheBytes)
        // Descendants that escape a rank's process group are reparented here, not to init.
        _ = cdistr_set_child_subreaper()
        signal(SIGPIPE, SIG_IGN)
    }

    /// The address to print: the bound host and the real port.
    public var listeningDescription: String {
        address.family == AF_INET6 ? "[\(address.host)]:\(address.port)" : "\(address.host):\(address.port)"
    }

    private func log(_ message: String) { configuration.log(message) }

    /// Serves on a dedicated thread.
    public func start() {
        let threadBody: @Sendable () -> Void = { [self] in acceptLoop() }
        Threads.start(name: "distr-accept", threadBody)
    }

    private func acceptLoop() {
        defer { acceptLoopDone.signal() }
        while !stopping.load(ordering: .acquiring) {
            let fd: Int32
            do { fd = try TCPSocket.accept(listener) } catch {
                if stopping.load(ordering: .acquiring) { return }
                if error.errno == EMFILE || error.errno == ENFILE {
                    log("accept: \(error); out of descriptors, pausing briefly")
                    usleep(100_000)
                }
                continue
            }
            let peer = TCPSocket.peerAddress(fd)?.description ?? "unknown peer"
            if pendingHandshakes.add(1, ordering: .acquiringAndReleasing).newValue > configuration.limits.maxPendingHandshakes {
                pendingHandshakes.subtract(1, ordering: .acquiringAndReleasing)
                log("refused connection from \(peer): too many connections in their handshake")
                FD.close(fd)
                continue
            }
            TCPSocket.configure(fd)
            let threadBody: @Sendable () -> Void = { [self] in serve(fd: fd, peer: peer) }
            Threads.start(name: "distr-conn", threadBody)
        }
    }

    /// Authenticates one connection and dispatches it by kind.
    private func serve(fd: Int32, peer: String) {
        var handshakeDone = false
        func endHandshake() {
            if !handshakeDone {
                handshakeDone = true
                pendingHandshakes.subtract(1, ordering: .acquiringAndReleasing)
            }
        }
        defer { endHandshake() }
        let hello: Handshake.Hello
        let keys: SessionKeys
        do {
            (hello, keys) = try Connection.serverHandshake(fd: fd, timeout: configuration.limits.handshakeTimeout) { hello in
                switch hello.kind {
                case .control: return configuration.secret
                case .rank: return rankKey(context: hello.context)
                }
            }
        } catch {
            let reason =
                (error as? SystemError).map { $0.errno == EAGAIN ? "handshake timed out" : $0.description } ?? "\(error)"
            log("refused connection from \(peer): \(reason)")
            FD.close(fd)
            return
        }
        endHandshake()
        switch hello.kind {
        case .control: serveControl(fd: fd, peer: peer, keys: keys)
        case .rank: serveRank(fd: fd, peer: peer, context: hello.context)
        }
    }

    static func rankContext(jobID: String, from: Int, to: Int) -> [UInt8] {
        var w = ByteWriter()
        w.string(jobID)
        w.int(from)
        w.int(to)
        return w.bytes
    }

    private func parseRankContext(_ context: [UInt8]) -> (jobID: String, from: Int, to: Int)? {
        var r = ByteReader(context)
        guard let jobID = try? r.string(), let from = try? r.int(), let to = try? r.int(), r.isAtEnd else { return nil }
        return (jobID, from, to)
    }

    private func rankKey(context: [UInt8]) -> [UInt8]? {
        guard let (jobID, _, to) = parseRankContext(context), let job = waitForJob(jobID), job.isLocal(rank: to) else {
            return nil
        }
        return job.spec.jobKey
    }

    /// The job, waiting up to the handshake timeout for it to be registered.
    private func waitForJob(_ jobID: String) -> Job? {
        let arrived = DispatchSemaphore(value: 0)
        if let job = jobs.withLock({ table -> Job? in
            if let job = table[jobID] { return job }
            jobArrivals.withLock { $0[jobID, default: []].append(arrived) }
            return nil
        }) {
            return job
        }
        _ = arrived.wait(timeout: .now() + configuration.limits.handshakeTimeout)
        return jobs.withLock { table in
            jobArrivals.withLock { waiting in
                waiting[jobID]?.removeAll { $0 === arrived }
                if waiting[jobID]?.isEmpty == true { waiting[jobID] = nil }
            }
            return table[jobID]
        }
    }

    private func serveRank(fd: Int32, peer: String, context: [UInt8]) {
        defer { FD.close(fd) }
        guard let (jobID, from, to) = parseRankContext(context), let job = jobs.withLock({ $0[jobID] }) else { return }
        do {
            // The target rank holds the socket before the dialer is told it may send.
            guard job.waitStarted(timeout: configuration.limits.handshakeTimeout) else {
                throw WireError.refused("rank \(to) has not started")
            }
            try job.deliverIncoming(fd: fd, from: from, to: to)
            try FD.writeAll(fd, [1])
        } catch {
            log("job \(jobID): connection from rank \(from) (\(peer)) to rank \(to) dropped: \(error)")
        }
    }

    /// Receives a job, its files, runs it, and follows the master's instructions until the
    /// connection ends. A lost connection ends the job.
    private func serveControl(fd: Int32, peer: String, keys: SessionKeys) {
        let connection: Connection
        do {
            connection = try Connection.accept(
                fd: fd, peer: peer, keys: keys, maxPayload: configuration.limits.maxFrame,
                headerOnlyTypes: [ControlMessage.fileDataType])
        } catch {
            FD.close(fd)
            return
        }
        guard let job = receiveJob(connection) else {
            connection.close()
            return
        }
        job.start()
        while true {
            do {
                switch try connection.receiveMessage() {
                case .cancel(let reason): job.cancel(reason: reason)
                case .peerExited(let rank, let status): job.relayPeerExit(rank: rank, status: status)
                default: throw WireError.refused("unexpected message during a job")
                }
            } catch {
                job.cancel(reason: error as? WireError == .closed ? "the master connection ended" : "master connection: \(error)")
                break
            }
        }
        if !job.waitFinished(timeout: configuration.grace + 10) {
            log("job \(job.spec.jobID): ranks still running \(configuration.grace + 10) s after the end was requested")
        }
        connection.close()
        // Logged last, once every resource of the job is released (tests wait for this line).
        log("job \(job.spec.jobID): finished" + (job.spec.keepDirectory ? ", directory kept at \(job.directory)" : ""))
    }

    /// Reads the job description and its files into a fresh directory. On failure tells the
    /// master why and leaves nothing behind.
    private func receiveJob(_ connection: Connection) -> Job? {
        var directory: String?
        var cachedCount = 0
        do {
            guard case .jobStart(let spec) = try connection.receiveMessage() else {
                throw WireError.refused("expected a job description")
            }
            try Self.validate(spec)
            if jobs.withLock({ $0[spec.jobID] }) != nil { throw WireError.refused("job \(spec.jobID) is already running here") }
            try BundlePath.validate(manifest: spec.manifest, limits: configuration.limits)
            let path = try makeJobDirectory(jobID: spec.jobID)
            directory = path
            // Files the cache has (with the right bytes) are copied in now; the master sends only the others.
            let cache = self.cache
            let extractor = try BundleExtractor(directory: path, manifest: spec.manifest, limits: configuration.limits, cache: cache) {
                cache?.store(path + "/" + $0.path, entry: $0)
            }
            if !spec.manifest.isEmpty { try connection.send(.filesNeeded(extractor.streamedIndices)) }
            cachedCount = extractor.cachedCount
            while !extractor.isComplete {
                guard case .fileData(let bytes) = try connection.receiveMessage() else {
                    throw BundleError.incomplete(extractor.currentPath)
                }
                try extractor.write(bytes)
            }
            let job = Job(
                spec: spec, directory: path, connection: connection, grace: configuration.grace, log: configuration.log
            ) { [self] finished in
                _ = jobs.withLock { $0.removeValue(forKey: finished.spec.jobID) }
            }
            let registered = jobs.withLock { table -> [DispatchSemaphore]? in
                if table[spec.jobID] != nil { return nil }
                table[spec.jobID] = job
                return jobArrivals.withLock { $0.removeValue(forKey: spec.jobID) ?? [] }
            }
            registered?.forEach { $0.signal() }
            if registered == nil { throw WireError.refused("job \(spec.jobID) is already running here") }
            try connection.send(.jobStarted(directory: path))
            log(
                "job \(spec.jobID) from \(connection.peer): \(spec.localRanks.count) rank(s) of \(spec.nodeCount), \(spec.manifest.count) file(s) (\(cachedCount) from cache): \(spec.arguments.joined(separator: " "))"
            )
            return job
        } catch {
            if let directory { FileIO.removeTree(directory) }
            if error as? WireError != .closed {
                log("job from \(connection.peer) refused: \(error)")
                try? connection.send(.failure("\(error)"))
            }
            return nil
        }
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
        var template = Array("\(configuration.workDirectory)/distr-\(jobID.prefix(12))-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw SystemError.current("mkdtemp in \(configuration.workDirectory)")
        }
        // mkdtemp creates it with mode 0700.
        return String(cString: made)
    }

    /// Graceful shutdown: stop accepting, end every job (TERM, grace, KILL), remove their
    /// directories. Returns when all jobs are gone or the bound passes.
    public func shutdown() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // shutdown() wakes a thread blocked in accept() on Linux; close() alone would not.
        Glibc.shutdown(listener, Int32(SHUT_RDWR))
        acceptLoopDone.wait()
        FD.close(listener)
        let running = jobs.withLock { Array($0.values) }
        for job in running { job.cancel(reason: "the worker is shutting down") }
        for job in running { job.waitFinished(timeout: configuration.grace + 5) }
    }
}

/// The release this build belongs to.
public enum DistrVersion {
    public static let string = "0.1.0"
}
