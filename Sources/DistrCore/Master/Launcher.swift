@preconcurrency import Glibc
import Dispatch
import Synchronization

/// Runs one job on a set of workers: connect to all in parallel, ship the bundle, stream the
/// output, and turn what happened into one exit status.
public final class Launcher: Sendable {
    /// One worker and the ranks it runs.
    struct Link: Sendable {
        var index: Int
        var peer: Peer
        var ranks: [Int]
    }

    let options: MasterOptions
    let secret: [UInt8]
    let links: [Link]
    let rankCount: Int
    let stderrFD: Int32
    private let connections = Mutex<[Int: Connection]>([:])
    /// Per worker: whether its job has been sent, and the relays and cancels held until then
    /// (a worker must see its job before any message about it).
    private let outbox = Mutex<[Int: (started: Bool, pending: [ControlMessage])]>([:])
    private let interrupted = Atomic<Int>(0)
    var isInterrupted: Bool { interrupted.load(ordering: .acquiring) > 0 }
    private let monitorBox = Mutex<JobMonitor?>(nil)
    let startTime = Clock.now

    /// Plans ranks over `peers`: `run` expands slots in peers order; `exec` runs one rank per
    /// distinct worker. Peers that name the same worker share one connection.
    public init(options: MasterOptions, peers: [Peer], secret: [UInt8], stderrFD: Int32 = 2) {
        self.options = options
        self.secret = secret
        self.stderrFD = stderrFD
        var links: [Link] = []
        var byAddress: [String: Int] = [:]
        var next = 0
        for peer in peers {
            let key = peer.description
            let index: Int
            if let existing = byAddress[key] {
                index = existing
                if case .exec = options.mode { continue }
            } else {
                index = links.count
                byAddress[key] = index
                links.append(Link(index: index, peer: peer, ranks: []))
            }
            let count: Int
            if case .exec = options.mode { count = 1 } else { count = peer.slots }
            for _ in 0..<count {
                links[index].ranks.append(next)
                next += 1
            }
        }
        self.links = links
        rankCount = next
    }

    func note(_ text: String) {
        try? FD.writeAll(stderrFD, Array("distr: \(text)\n".utf8))
    }

    /// Runs the job and returns the exit status for `distr-master`.
    public func run() -> Int32 {
        let arguments: [String]
        var shipped = options.files
        switch options.mode {
        case .exec(let command):
            arguments = ["/bin/sh", "-c", command.joined(separator: " ")]
        case .run(let program, let rest):
            if !program.hasPrefix("/") && FileIO.mode(program).map({ $0 & S_IFMT == S_IFREG }) == true {
                let path = BundleCollector.bundlePath(for: program)
                shipped.insert(program, at: 0)
                arguments = ["./" + path] + rest
            } else {
                arguments = [program] + rest
            }
        }
        let sources: [BundleSource]
        do { sources = try BundleCollector.collect(shipped) } catch {
            note("\(error)")
            return ExitCode.usage
        }

        // Connect to every worker at once.
        let failures = Mutex<[Int: String]>([:])
        let reached = Mutex<[Int: String]>([:])
        let group = DispatchGroup()
        for link in links {
            group.enter()
            Threads.start(name: "distr-connect") { [self] in
                defer { group.leave() }
                do {
                    let fd = try TCPSocket.connect(host: link.peer.host, port: link.peer.port, timeout: options.connectTimeout)
                    let host = TCPSocket.peerAddress(fd)?.host ?? link.peer.host
                    let connection = try Connection.client(
                        fd: fd, peer: link.peer.label, key: secret, kind: .control, timeout: options.connectTimeout,
                        headerOnlyTypes: [ControlMessage.fileDataType])
                    connections.withLock { $0[link.index] = connection }
                    reached.withLock { $0[link.index] = host }
                } catch {
                    failures.withLock { $0[link.index] = "\(error)" }
                }
            }
        }
        group.wait()
        let connectFailures = failures.withLock { $0 }
        if !connectFailures.isEmpty {
            for (index, why) in connectFailures.sorted(by: { $0.key < $1.key }) {
                note("node \(links[index].peer.label): \(why)")
            }
            note("\(connectFailures.count) of \(links.count) node(s) could not be reached; nothing was started")
            closeAll()
            return ExitCode.unavailable
        }

        if isInterrupted {
            closeAll()
            note("interrupted before the job started")
            return ExitCode.interrupted
        }
        let hosts = reached.withLock { $0 }
        var placements: [RankPlacement] = []
        for link in links {
            for rank in link.ranks {
                placements.append(
                    RankPlacement(
                        rank: rank, host: hosts[link.index] ?? link.peer.host, port: link.peer.port, worker: link.index, label: link.peer.label))
            }
        }
        placements.sort { $0.rank < $1.rank }
        let jobID = randomBytes(8).hex
        let jobKey = randomBytes(32)
        let failFast: Bool
        if case .run = options.mode { failFast = !options.keepGoing } else { failFast = false }
        let monitor = JobMonitor(
            workerCount: links.count, failFast: failFast, printer: OutputPrinter(mode: options.output),
            cancelAll: { [self] reason in broadcast(.cancel(reason: reason)) },
            relayExit: { [self] from, rank, code in
                for index in connections.withLock({ Array($0.keys) }) where index != from {
                    deliver(.peerExited(rank: rank, status: code), to: index)
                }
            })
        monitorBox.withLock { $0 = monitor }

        for link in links {
            guard let connection = connections.withLock({ $0[link.index] }) else { continue }
            let spec = JobSpec(
                jobID: jobID, arguments: arguments, environment: options.environment, localRanks: link.ranks,
                placements: placements, keepDirectory: options.keepDirectory, jobKey: jobKey,
                manifest: sources.map(\.entry), workerIndex: link.index)
            Threads.start(name: "distr-serve") { [self] in
                serve(link: link, connection: connection, spec: spec, sources: sources, monitor: monitor)
            }
        }

        let finished = monitor.waitAll(timeout: options.timeout)
        var timedOut = false
        if !finished {
            timedOut = true
            monitor.cancel(reason: "the job's time limit of \(options.timeout ?? 0) s passed")
            _ = monitor.waitAll(timeout: options.grace + 5)
        }
        closeAll()
        let names = Dictionary(uniqueKeysWithValues: placements.map { ($0.rank, $0.label) })
        monitor.printer.finish(ranks: placements.map(\.rank), names: names)
        return conclude(monitor.snapshot, names: names, timedOut: timedOut)
    }

    /// Sends the job and its files, then relays what the worker reports until it ends.
    private func serve(link: Link, connection: Connection, spec: JobSpec, sources: [BundleSource], monitor: JobMonitor) {
        var error: String?
        do {
            try connection.send(.jobStart(spec))
            if !sources.isEmpty {
                // The worker says which files it lacks; the others it has cached by digest.
                switch try connection.receiveMessage() {
                case .filesNeeded(let indices):
                    try sendFiles(indices.compactMap { sources.indices.contains($0) ? sources[$0] : nil }, over: connection)
                case .failure(let message):
                    error = "the worker refused the job: \(message)"
                default:
                    error = "the worker sent an unexpected message"
                }
            }
        } catch {
            // The worker may have refused the job and closed; its reason is read below.
        }
        markStarted(link.index, connection: connection)
        loop: while error == nil {
            do {
                switch try connection.receiveMessage() {
                case .jobStarted(let directory):
                    if options.keepDirectory { monitor.keptDirectory(worker: link.index, path: directory) }
                case .output(let rank, let stream, _, let bytes):
                    monitor.output(rank: rank, stream: stream, bytes: bytes)
                case .rankExited(let rank, let status, let ended):
                    monitor.rankExited(worker: link.index, rank: rank, status: status, endedByDistr: ended)
                case .jobEnded(let kept):
                    if let kept { monitor.keptDirectory(worker: link.index, path: kept) }
                    break loop
                case .failure(let message):
                    error = "the worker refused the job: \(message)"
                    break loop
                default:
                    error = "the worker sent an unexpected message"
                    break loop
                }
            } catch let failure {
                error = "connection lost during the job (\(failure))"
                break
            }
        }
        connection.close()
        monitor.workerFinished(link.index, error: error)
    }

    private func sendFiles(_ sources: [BundleSource], over connection: Connection) throws {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for source in sources {
            let fd = open(source.localPath, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw BundleError.cannotRead(source.localPath, .current("open")) }
            defer { FD.close(fd) }
            var left = source.entry.size
            while left > 0 {
                let n = try FD.read(fd, into: &buffer)
                if n == 0 { break }
                let take = min(n, left)
                try buffer.withUnsafeBytes { raw in
                    try connection.send(type: ControlMessage.fileDataType, payload: UnsafeRawBufferPointer(rebasing: raw[0..<take]))
                }
                left -= take
            }
            // A file that shrank since it was hashed: pad, and let the worker's digest check report it.
            if left > 0 { try connection.send(type: ControlMessage.fileDataType, payload: [UInt8](repeating: 0, count: left)) }
        }
    }

    private func broadcast(_ message: ControlMessage) {
        for index in connections.withLock({ Array($0.keys) }) { deliver(message, to: index) }
    }

    /// Sends now if the worker has its job, else holds the message until it does.
    private func deliver(_ message: ControlMessage, to index: Int) {
        guard let connection = connections.withLock({ $0[index] }) else { return }
        outbox.withLock { table in
            var entry = table[index] ?? (false, [])
            if entry.started {
                try? connection.send(message)
            } else {
                entry.pending.append(message)
                table[index] = entry
            }
        }
    }

    private func markStarted(_ index: Int, connection: Connection) {
        outbox.withLock { table in
            for message in table[index]?.pending ?? [] { try? connection.send(message) }
            table[index] = (true, [])
        }
    }

    private func closeAll() {
        for connection in connections.withLock({ Array($0.values) }) { connection.close() }
    }

    /// Ctrl-C: the first ends the job on every node; a second gives up waiting.
    public func interrupt() -> Bool {
        let count = interrupted.add(1, ordering: .acquiringAndReleasing).newValue
        if count == 1 {
            note("interrupted; ending the job on every node (Ctrl-C again to stop waiting)")
            monitorBox.withLock { $0 }?.cancel(reason: "interrupted by the user")
        }
        return count > 1
    }
}
