/// A `distr-worker` this process started. `--local`, the end-to-end tests and the benchmark all
/// start workers this one way: port 0, the ready line (`distr-worker listening on HOST:PORT`)
/// awaited on the worker's stdout with a deadline, the port read from it; and stop them with
/// `Teardown` (SIGTERM, a grace period, SIGKILL).
package final class WorkerProcess: Sendable {
    /// How to start one worker.
    package struct Configuration: Sendable {
        package var executable: String
        package var secretFile: String
        package var workDirectory: String
        package var bind: String
        /// `--grace` (between SIGTERM and SIGKILL for the worker's ranks); nil: the worker's default.
        package var grace: Double?
        /// Further options, after the ones above (`--exit-with-parent`, `--max-files 1`, ...).
        package var extraArguments: [String]
        /// A program that runs the worker (`setpriv ...`, `ip netns exec NAME`); it must exec the
        /// worker, so that the pid it gets is the worker's.
        package var prefix: [String]
        /// Where the worker's stderr (its log) goes.
        package var log: Log
        /// `NAME=VALUE` entries; nil: this process's environment.
        package var environment: [String]?

        package init(
            executable: String, secretFile: String, workDirectory: String, bind: String = "127.0.0.1", grace: Double? = nil,
            extraArguments: [String] = [], prefix: [String] = [], log: Log, environment: [String]? = nil
        ) {
            self.executable = executable
            self.secretFile = secretFile
            self.workDirectory = workDirectory
            self.bind = bind
            self.grace = grace
            self.extraArguments = extraArguments
            self.prefix = prefix
            self.log = log
            self.environment = environment
        }

        /// The command line: prefix, worker, options.
        package var arguments: [String] {
            prefix + [executable, "--port", "0", "--bind", bind, "--secret-file", secretFile, "--work-dir", workDirectory]
                + (grace.map { ["--grace", String($0)] } ?? []) + extraArguments
        }
    }

    /// Where a worker's stderr goes.
    package enum Log: Sendable {
        /// A file, created (mode 0600) or truncated; its text is in the error when the worker does not start.
        case file(String)
        /// A descriptor the caller keeps and closes (the write end of a pipe it reads, say); the
        /// worker gets a copy.
        case descriptor(Int32)
    }

    package let pid: Int32
    package let port: Int
    /// `HOST:PORT` as the ready line gives it (`[::1]:PORT` for IPv6).
    package let address: String
    /// The worker's exit, once the reaper has seen it.
    package let exit: ChildExit

    private init(pid: Int32, port: Int, address: String, exit: ChildExit) {
        self.pid = pid
        self.port = port
        self.address = address
        self.exit = exit
    }

    /// Starts one worker and waits for its ready line until `deadline`.
    /// - Throws: `WorkerProcessError`; a worker that did not become ready has been stopped.
    package static func start(_ configuration: Configuration, until deadline: Deadline) throws(WorkerProcessError) -> WorkerProcess {
        try start([configuration], until: deadline)[0]
    }

    /// Starts the workers all at once, then waits for each one's ready line until `deadline`.
    /// - Throws: `WorkerProcessError` for the first that did not start; every one already
    ///   started has been stopped.
    package static func start(_ configurations: [Configuration], until deadline: Deadline) throws(WorkerProcessError) -> [WorkerProcess] {
        var spawned: [(pid: Int32, exit: ChildExit, stdout: Int32)] = []
        var ready: [WorkerProcess] = []
        var pipesClosed = 0
        do throws(WorkerProcessError) {
            for configuration in configurations { spawned.append(try spawn(configuration)) }
            for (index, child) in spawned.enumerated() {
                let line = FD.readLine(child.stdout, until: deadline).map { String(decoding: $0, as: UTF8.self) }
                // Nothing else comes on stdout; the worker ignores SIGPIPE if it ever writes more.
                FD.close(child.stdout)
                pipesClosed += 1
                guard let line, let (address, port) = parseReadyLine(line) else {
                    let why = line.map { "its first line was '\($0)', not a ready line" } ?? notReadyReason(child.exit, until: deadline)
                    throw WorkerProcessError.notReady(index: index, why: why, log: configurations[index].log.text)
                }
                ready.append(WorkerProcess(pid: child.pid, port: port, address: address, exit: child.exit))
            }
        } catch {
            for child in spawned.dropFirst(pipesClosed) { FD.close(child.stdout) }
            Teardown.end(spawned.map { (target: Teardown.Target.process($0.pid), exited: $0.exit.exited) }, grace: 1)
            throw error
        }
        return ready
    }

    /// Stops the worker: SIGTERM (it ends its jobs, removes their directories and exits), up
    /// to `grace` seconds for that, then SIGKILL. Returns once it has been reaped.
    /// - Returns: true when it exited within the grace.
    @discardableResult
    package func stop(grace: Double = 10) -> Bool {
        Teardown.end(.process(pid), grace: grace, exited: exit.exited)
    }

    /// Stops several workers together, with one grace period for all.
    /// - Returns: how many took SIGKILL.
    @discardableResult
    package static func stop(_ workers: [WorkerProcess], grace: Double = 10) -> Int {
        Teardown.end(workers.map { (target: Teardown.Target.process($0.pid), exited: $0.exit.exited) }, grace: grace)
    }

    /// `distr-worker listening on HOST:PORT` → (HOST:PORT, PORT).
    package static func parseReadyLine(_ line: String) -> (address: String, port: Int)? {
        let prefix = "distr-worker listening on "
        guard line.hasPrefix(prefix), let colon = line.lastIndex(of: ":"), let port = Int(line[line.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        return (String(line.dropFirst(prefix.count)), port)
    }

    private static func spawn(_ configuration: Configuration) throws(WorkerProcessError) -> (pid: Int32, exit: ChildExit, stdout: Int32) {
        let arguments = configuration.arguments
        do throws(SystemError) {
            let log: Int32
            switch configuration.log {
            case .file(let path):
                log = try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate], permissions: 0o600).release()
            case .descriptor(let fd):
                log = fd
            }
            defer { if case .file = configuration.log { FD.close(log) } }
            let stdout = try FD.pipe()
            defer { FD.close(stdout.write) }
            let exit = ChildExit()
            let environment = configuration.environment ?? Environment.all.map { "\($0.key)=\($0.value)" }
            do throws(SystemError) {
                let pid = try Spawner.spawn(
                    SpawnRequest(arguments: arguments, environment: environment, stdout: stdout.write, stderr: log), onExit: exit.record)
                return (pid, exit, stdout.read)
            } catch {
                FD.close(stdout.read)
                throw error
            }
        } catch {
            throw .couldNotRun(arguments.first ?? "", error)
        }
    }

    /// Why no line came: the worker's exit status if it has exited by the deadline.
    private static func notReadyReason(_ exit: ChildExit, until deadline: Deadline) -> String {
        // Its stdout ended or the deadline passed: if it exited, that is at most moments away.
        if let status = exit.wait(until: deadline) { return "it ended (\(status)) before its ready line" }
        return "no ready line came in time"
    }
}

extension WorkerProcess.Log {
    /// The log file's text, or "" for a descriptor (the caller has it).
    var text: String {
        guard case .file(let path) = self else { return "" }
        let bytes = try? FileIO.readAll(path)  // No log to show: the error still says what went wrong.
        return bytes.map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}

/// Why a worker could not be started.
package enum WorkerProcessError: Error, CustomStringConvertible {
    /// The program (the worker, or the prefix's first word) could not be run.
    case couldNotRun(String, SystemError)
    /// Worker `index` (counting those started together) printed no ready line; `log` is its
    /// stderr when that went to a file.
    case notReady(index: Int, why: String, log: String)

    package var description: String {
        switch self {
        case .couldNotRun(let program, let error): "cannot run '\(program)': \(error)"
        case .notReady(let index, let why, let log):
            "worker \(index) did not start: \(why)" + (log.isEmpty ? "" : "; its log:\n\(log)")
        }
    }
}
