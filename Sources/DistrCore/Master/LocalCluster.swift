import Dispatch
import Synchronization

/// `--local N`: N workers on loopback with a throw-away secret, started for one job and stopped
/// after it. Their logs go to files in a temporary directory that is removed at the end.
package final class LocalCluster: Sendable {
    package let peers: [Peer]
    package let secret: [UInt8]
    let root: String
    let pids: [Int32]
    let exited: [DispatchSemaphore]

    /// `distr-worker` beside this executable, or `$DISTR_WORKER_BIN`.
    package static func workerExecutable() -> String {
        if let explicit = Environment.value("DISTR_WORKER_BIN"), !explicit.isEmpty { return explicit }
        return Environment.executableDirectory + "/distr-worker"
    }

    /// Starts the workers and waits for each one's "listening" line.
    /// - Throws: `LocalClusterError` naming the worker that did not start, with its log.
    package init(count: Int, grace: Double = 2, executable: String = LocalCluster.workerExecutable()) throws {
        guard FileIO.isExecutable(executable) else { throw LocalClusterError.noWorker(executable) }
        root = try FileIO.makeTemporaryDirectory(template: "\(Environment.temporaryDirectory)/distr-local-XXXXXX")
        secret = randomBytes(ClusterSecret.size)
        let secretPath = root + "/secret"
        var started: [(Int32, DispatchSemaphore)] = []
        var peers: [Peer] = []
        do {
            try FileIO.write(secretPath, Array(secret.hex.utf8), mode: 0o600, exclusive: true)
            var pending: [(pipe: Int32, log: String)] = []
            for index in 0..<count {
                let work = root + "/node\(index)"
                try FileIO.makeDirectories(work)
                let log = root + "/worker\(index).log"
                let logFD = try FileDescriptor.open(log, .writeOnly, options: [.create, .truncate], permissions: 0o600).release()
                let out = try FD.pipe()
                let done = DispatchSemaphore(value: 0)
                let arguments = [
                    executable, "--port", "0", "--bind", "127.0.0.1", "--secret-file", secretPath, "--work-dir", work,
                    "--grace", String(grace), "--exit-with-parent",
                ]
                let environment = Environment.all.map { "\($0.key)=\($0.value)" }
                let pid = try Spawner.spawn(
                    SpawnRequest(arguments: arguments, environment: environment, stdout: out.write, stderr: logFD)
                ) { _ in done.signal() }
                FD.close(out.write)
                FD.close(logFD)
                started.append((pid, done))
                pending.append((out.read, log))
            }
            // Every worker starts in parallel; read their lines in turn.
            for (index, item) in pending.enumerated() {
                defer { FD.close(item.pipe) }
                guard let port = Self.readListeningPort(item.pipe, timeout: 15) else {
                    let log = try? FileIO.readAll(item.log)  // No log to show: the error still names the worker.
                    let text = log.map { String(decoding: $0, as: UTF8.self) } ?? ""
                    throw LocalClusterError.didNotStart(index: index, log: text)
                }
                peers.append(Peer(host: "127.0.0.1", port: port))
            }
        } catch {
            for (pid, done) in started {
                try? Signal.kill.send(toProcess: pid)  // Not yet reaped, so it cannot fail.
                done.wait()
            }
            FileIO.removeTree(root)
            throw error
        }
        self.peers = peers
        pids = started.map(\.0)
        exited = started.map(\.1)
    }

    /// Reads `distr-worker listening on HOST:PORT` from a worker's stdout and returns PORT.
    package static func readListeningPort(_ fd: Int32, timeout: Double) -> Int? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        let deadline = Clock.now + timeout
        while line.count < 512 {
            let timeout = Int32(max(0, deadline - Clock.now) * 1000)
            guard (try? FD.waitReadable(fd, timeout: timeout)) == true else { return nil }  // Failed or timed out: not started.
            guard (try? FD.read(fd, into: &byte, count: 1)) == 1 else { return nil }  // An error is the end, as for EOF.
            if byte == 10 { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("distr-worker listening on "), let colon = text.lastIndex(of: ":") else { return nil }
        return Int(text[text.index(after: colon)...])
    }

    /// Stops every worker (SIGTERM: they end their jobs and exit) and removes the directory.
    package func stop() {
        for pid in pids { try? Signal.terminate.send(toProcess: pid) }  // ESRCH: that worker has exited already.
        for (pid, done) in zip(pids, exited) where done.wait(timeout: .now() + 10) == .timedOut {
            try? Signal.kill.send(toProcess: pid)  // Not reaped yet (`done` was not signalled): cannot fail.
            done.wait()
        }
        FileIO.removeTree(root)
    }
}

package enum LocalClusterError: Error, CustomStringConvertible {
    case noWorker(String)
    case didNotStart(index: Int, log: String)

    package var description: String {
        switch self {
        case .noWorker(let path):
            "--local needs distr-worker beside distr-master, but '\(path)' is not an executable; build both (swift build) or set DISTR_WORKER_BIN"
        case .didNotStart(let index, let log): "local worker \(index) did not start:\n\(log)"
        }
    }
}
