/// `--local N`: N workers on loopback with a throw-away secret, started for one job and stopped
/// after it. Their logs go to files in a temporary directory that is removed at the end.
///
/// The one thing kept between runs is the Python modules with their bytecode, in the user's
/// cache (`pythonDirectory`): without it every run's Python ranks would compile them again,
/// about 50 ms of CPU per rank.
package final class LocalCluster: Sendable {
    package let peers: [Peer]
    package let secret: [UInt8]
    let root: String
    let workers: [WorkerProcess]

    /// `distr-worker` beside this executable, or `$DISTR_WORKER_BIN`.
    package static func workerExecutable() -> String {
        if let explicit = Environment.value("DISTR_WORKER_BIN"), !explicit.isEmpty { return explicit }
        return Environment.executableDirectory + "/distr-worker"
    }

    /// Where the workers find the Python modules: `$XDG_CACHE_HOME/distr/python` (else
    /// `~/.cache/distr/python`), installed and compiled there by the master before the workers
    /// start (once: later runs find them); nil (each worker's default, inside the run's
    /// temporary directory) when they cannot be installed there.
    static func pythonDirectory() -> String? {
        guard let cache = Environment.userCacheDirectory else { return nil }
        let directory = cache + "/python"
        // A note (no python3 to compile with) only means ranks compile on import.
        do { _ = try PythonModules.install(root: directory) } catch { return nil }  // Read-only home: the per-run default still works.
        return directory
    }

    /// Starts the workers and waits for each one's "listening" line.
    /// - Throws: `LocalClusterError` naming the worker that did not start, with its log.
    package init(count: Int, grace: Double = 2, executable: String = LocalCluster.workerExecutable()) throws {
        guard FileIO.isExecutable(executable) else { throw LocalClusterError.noWorker(executable) }
        root = try FileIO.makeTemporaryDirectory(template: "\(Environment.temporaryDirectory)/distr-local-XXXXXX")
        secret = randomBytes(ClusterSecret.size)
        let secretPath = root + "/secret"
        do {
            try FileIO.write(secretPath, Array(secret.hex.utf8), mode: 0o600, exclusive: true)
            var configurations: [WorkerProcess.Configuration] = []
            let python = Self.pythonDirectory().map { ["--python-dir", $0] } ?? []
            for index in 0..<count {
                let work = root + "/node\(index)"
                try FileIO.makeDirectories(work)
                configurations.append(
                    WorkerProcess.Configuration(
                        executable: executable, secretFile: secretPath, workDirectory: work, grace: grace,
                        extraArguments: ["--exit-with-parent"] + python, log: .file(root + "/worker\(index).log")))
            }
            do {
                workers = try WorkerProcess.start(configurations, until: .after(15))
            } catch {
                throw LocalClusterError.didNotStart(error)
            }
        } catch {
            FileIO.removeTree(root)
            throw error
        }
        peers = workers.map { Peer(host: "127.0.0.1", port: $0.port) }
    }

    /// Stops every worker (SIGTERM: they end their jobs and exit; SIGKILL for any still running
    /// 10 s later) and removes the directory.
    package func stop() {
        WorkerProcess.stop(workers, grace: 10)
        FileIO.removeTree(root)
    }
}

package enum LocalClusterError: Error, CustomStringConvertible {
    case noWorker(String)
    case didNotStart(WorkerProcessError)

    package var description: String {
        switch self {
        case .noWorker(let path):
            "--local needs distr-worker beside distr-master, but '\(path)' is not an executable; build both (swift build) or set DISTR_WORKER_BIN"
        case .didNotStart(let error): "local \(error)"
        }
    }
}
