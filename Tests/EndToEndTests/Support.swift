import CDistrSys
import Foundation
import Synchronization
import Testing

@testable import DistrCore

/// Where the built executables are: beside the test bundle.
enum Binaries {
    static let directory: String = {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (me as NSString).deletingLastPathComponent
    }()
    static var worker: String { directory + "/distr-worker" }
    static var master: String { directory + "/distr-master" }
    static func example(_ name: String) -> String { directory + "/" + name }
}

/// Collects what a process writes to one pipe, on a thread, and lets a test wait for text.
final class OutputWatcher: Sendable {
    private let state = Mutex<(bytes: [UInt8], closed: Bool)>(([], false))
    private let changed = DispatchSemaphore(value: 0)

    init(fd: Int32) {
        Thread { [self] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                state.withLock { $0.bytes += chunk[0..<n] }
                changed.signal()
            }
            close(fd)
            state.withLock { $0.closed = true }
            changed.signal()
        }.start()
    }

    var bytes: [UInt8] { state.withLock { $0.bytes } }
    var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Waits until the output contains `needle` (true) or the stream ends or time runs out (false).
    @discardableResult
    func waitFor(_ needle: String, timeout: Double = 30) -> Bool {
        let deadline = Clock.now + timeout
        while true {
            let (current, closed) = state.withLock { (String(decoding: $0.bytes, as: UTF8.self), $0.closed) }
            if current.contains(needle) { return true }
            if closed || Clock.now > deadline { return false }
            _ = changed.wait(timeout: .now() + max(0, deadline - Clock.now))
        }
    }

    /// Waits until `needle` occurs at least `count` times.
    func waitFor(count: Int, of needle: String, timeout: Double = 30) -> Bool {
        let deadline = Clock.now + timeout
        while true {
            let (current, closed) = state.withLock { (String(decoding: $0.bytes, as: UTF8.self), $0.closed) }
            if current.components(separatedBy: needle).count - 1 >= count { return true }
            if closed || Clock.now > deadline { return false }
            _ = changed.wait(timeout: .now() + max(0, deadline - Clock.now))
        }
    }

    /// Waits for end of stream.
    func waitClosed(timeout: Double = 60) -> Bool {
        let deadline = Clock.now + timeout
        while !state.withLock({ $0.closed }) {
            if Clock.now > deadline { return false }
            _ = changed.wait(timeout: .now() + max(0, deadline - Clock.now))
        }
        return true
    }
}

/// A child process started with `Spawner`, its output watched, its exit awaited.
final class TestProcess: Sendable {
    let pid: pid_t
    let stdout: OutputWatcher
    let stderr: OutputWatcher
    private final class StatusBox: Sendable { let value = Mutex<RankStatus?>(nil) }
    private let status = StatusBox()
    private let exited = DispatchSemaphore(value: 0)

    init(_ arguments: [String], directory: String? = nil, environment extra: [String: String] = [:]) throws {
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in extra { environment[key] = value }
        let out = try FD.pipe()
        let err = try FD.pipe()
        let box = status
        let done = exited
        pid = try Spawner.spawn(
            SpawnRequest(
                arguments: arguments, environment: environment.map { "\($0.key)=\($0.value)" }, directory: directory,
                stdout: out.write, stderr: err.write)
        ) { result in
            box.value.withLock { $0 = result }
            done.signal()
        }
        FD.close(out.write)
        FD.close(err.write)
        stdout = OutputWatcher(fd: out.read)
        stderr = OutputWatcher(fd: err.read)
    }

    /// Waits for exit (killing the process after `timeout`) and for its output to end.
    @discardableResult
    func wait(timeout: Double = 60) -> RankStatus {
        if exited.wait(timeout: .now() + timeout) == .timedOut {
            Issue.record("process \(pid) still running after \(timeout) s; killed. Its stderr:\n\(String(stderr.text.suffix(4000)))")
            kill(pid, SIGKILL)
            exited.wait()
        }
        exited.signal()
        _ = stdout.waitClosed(timeout: 10)
        _ = stderr.waitClosed(timeout: 10)
        return status.value.withLock { $0 } ?? .exited(-1)
    }

    func signal(_ number: Int32) { kill(pid, number) }
}

/// The outcome of one `distr-master` run.
struct MasterRun {
    var status: Int32
    var stdout: String
    var stderr: String
    var stdoutBytes: [UInt8]
    var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }
}

/// A temporary directory removed at the end of the test.
final class TemporaryDirectory: Sendable {
    let path: String
    init() throws {
        var template = Array("\(NSTemporaryDirectory())/distr-e2e-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        path = String(cString: made)
    }
    deinit { FileIO.removeTree(path) }

    func write(_ name: String, _ text: String, mode: mode_t = 0o644) throws {
        if let slash = name.lastIndex(of: "/") { try FileIO.makeDirectories(path + "/" + name[..<slash]) }
        try FileIO.write(path + "/" + name, Array(text.utf8), mode: mode, exclusive: false)
    }

    func entries(_ sub: String = "") -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path + "/" + sub)) ?? []).sorted()
    }
}

/// One real `distr-worker` on 127.0.0.1, port 0.
final class TestWorker: Sendable {
    let process: TestProcess
    let port: Int
    let workDirectory: String

    /// `prefix` runs the worker through another program (`setpriv` to drop privileges).
    init(secretFile: String, workDirectory: String, arguments: [String] = [], prefix: [String] = []) throws {
        try FileIO.makeDirectories(workDirectory)
        self.workDirectory = workDirectory
        process = try TestProcess(
            prefix + [
                Binaries.worker, "--port", "0", "--bind", "127.0.0.1", "--secret-file", secretFile, "--work-dir", workDirectory, "--grace", "1",
            ]
                + arguments)
        guard process.stdout.waitFor("\n", timeout: 20) else {
            process.signal(SIGKILL)
            throw TestFailure("worker did not start: \(process.stderr.text)")
        }
        let line = process.stdout.text
        guard line.hasPrefix("distr-worker listening on 127.0.0.1:"),
            let port = Int(line.split(separator: ":").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
        else { throw TestFailure("unexpected first line: \(line)") }
        self.port = port
    }

    var peer: String { "127.0.0.1:\(port)" }

    func stop() {
        process.signal(SIGTERM)
        process.wait(timeout: 20)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Several workers sharing one secret, a peers file, and a scratch directory.
final class TestCluster: Sendable {
    let root: TemporaryDirectory
    let secretFile: String
    let workers: [TestWorker]
    let peersFile: String

    init(workers count: Int, slots: [Int]? = nil, workerArguments: [String] = []) throws {
        root = try TemporaryDirectory()
        secretFile = root.path + "/secret"
        try ClusterSecret.generate(path: secretFile)
        var workers: [TestWorker] = []
        for index in 0..<count {
            workers.append(try TestWorker(secretFile: secretFile, workDirectory: root.path + "/work\(index)", arguments: workerArguments))
        }
        self.workers = workers
        peersFile = root.path + "/peers.txt"
        var text = "# test cluster\n"
        for (index, worker) in workers.enumerated() {
            text += worker.peer + (slots.map { " slots=\($0[index])" } ?? "") + "\n"
        }
        try FileIO.write(peersFile, Array(text.utf8), mode: 0o644, exclusive: false)
    }

    deinit { for worker in workers { worker.stop() } }

    /// Starts `distr-master` against this cluster.
    func startMaster(_ arguments: [String], directory: String? = nil) throws -> TestProcess {
        guard let sub = arguments.first else { throw TestFailure("no subcommand") }
        return try TestProcess(
            [Binaries.master, sub, "--peers", peersFile, "--secret-file", secretFile] + arguments.dropFirst(),
            directory: directory ?? root.path)
    }

    func master(_ arguments: [String], directory: String? = nil) throws -> MasterRun {
        try TestProcess.run(startMaster(arguments, directory: directory))
    }

    /// Everything left in the workers' work directories (job directories, and records of jobs
    /// in `.distr-jobs`) except the file cache, which outlives jobs.
    var leftoverJobDirectories: [String] {
        workers.flatMap { worker in
            let top = ((try? FileManager.default.contentsOfDirectory(atPath: worker.workDirectory)) ?? [])
                .filter { $0 != ".distr-cache" && $0 != ".distr-jobs" }.map { worker.workDirectory + "/" + $0 }
            let records = ((try? FileManager.default.contentsOfDirectory(atPath: worker.workDirectory + "/.distr-jobs")) ?? [])
                .map { worker.workDirectory + "/.distr-jobs/" + $0 }
            return top + records
        }
    }
}

extension TestProcess {
    static func run(_ process: TestProcess, timeout: Double = 60) -> MasterRun {
        let status = process.wait(timeout: timeout)
        return MasterRun(status: status.code, stdout: process.stdout.text, stderr: process.stderr.text, stdoutBytes: process.stdout.bytes)
    }

    /// `distr-master` with these arguments, to completion.
    static func master(_ arguments: [String], directory: String? = nil, environment: [String: String] = [:]) throws -> MasterRun {
        run(try TestProcess([Binaries.master] + arguments, directory: directory, environment: environment))
    }
}

/// Process checks for leak and cleanup tests.
enum Processes {
    /// True when `pid` has exited (gone or a zombie), waiting up to `timeout` for it.
    static func waitGone(_ pid: pid_t, timeout: Double = 15) -> Bool {
        let fd = cdistr_pidfd_open(pid)
        if fd < 0 { return errno == ESRCH }
        defer { close(fd) }
        return (try? FD.waitReadable(fd, timeout: Int32(timeout * 1000))) == true
    }

    /// True when `pid` runs the distr-worker binary (a worker, or a worker's sentinel).
    static func isWorker(_ pid: pid_t) -> Bool {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) == Binaries.worker
    }

    /// Live (non-zombie) processes whose parent is `pid`.
    static func children(of pid: pid_t) -> [pid_t] {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return all.compactMap { pid_t($0) }.filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && fields[0] != "Z" && pid_t(fields[1]) == pid
        }
    }
}
