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
    private let state: Mutex<(bytes: [UInt8], closed: Bool)>
    private let changed = DispatchSemaphore(value: 0)

    /// A stream that has ended with `bytes` (a worker's stdout: its ready line, read by `WorkerProcess`).
    init(ended bytes: [UInt8]) { state = Mutex((bytes, true)) }

    init(fd: Int32) {
        state = Mutex(([], false))
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
        waitUntil(timeout: timeout) { $0.contains(needle) }
    }

    /// Waits until `needle` occurs at least `count` times.
    func waitFor(count: Int, of needle: String, timeout: Double = 30) -> Bool {
        waitUntil(timeout: timeout) { $0.components(separatedBy: needle).count - 1 >= count }
    }

    /// Waits until the output so far satisfies `done` (true), or the stream ends or time runs out.
    func waitUntil(timeout: Double = 30, _ done: (String) -> Bool) -> Bool {
        let deadline = Clock.now + timeout
        while true {
            let (current, closed) = state.withLock { (String(decoding: $0.bytes, as: UTF8.self), $0.closed) }
            if done(current) { return true }
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
    let exit: ChildExit

    /// `stdin`: a descriptor for the child's stdin (the caller closes its copy); nil: `/dev/null`.
    init(_ arguments: [String], directory: String? = nil, environment extra: [String: String] = [:], stdin: Int32? = nil) throws {
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in extra { environment[key] = value }
        let out = try FD.pipe()
        let err = try FD.pipe()
        let exit = ChildExit()
        pid = try Spawner.spawn(
            SpawnRequest(
                arguments: arguments, environment: environment.map { "\($0.key)=\($0.value)" }, directory: directory, stdin: stdin,
                stdout: out.write, stderr: err.write),
            onExit: exit.record)
        self.exit = exit
        FD.close(out.write)
        FD.close(err.write)
        stdout = OutputWatcher(fd: out.read)
        stderr = OutputWatcher(fd: err.read)
    }

    /// A process started another way (a `WorkerProcess`), its output already watched.
    init(pid: pid_t, exit: ChildExit, stdout: OutputWatcher, stderr: OutputWatcher) {
        self.pid = pid
        self.exit = exit
        self.stdout = stdout
        self.stderr = stderr
    }

    /// Waits for exit (killing the process after `timeout`) and for its output to end.
    @discardableResult
    func wait(timeout: Double = 60) -> RankStatus {
        if exit.wait(until: .after(timeout)) == nil {
            Issue.record("process \(pid) still running after \(timeout) s; killed. Its stderr:\n\(String(stderr.text.suffix(4000)))")
            Teardown.end(.process(pid), grace: 0, exited: exit.exited)
        }
        _ = stdout.waitClosed(timeout: 10)
        _ = stderr.waitClosed(timeout: 10)
        return exit.status ?? .exited(-1)
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

/// A temporary directory removed at the end of the test: by `withTemporaryDirectory`, or else
/// when the last reference goes.
final class TemporaryDirectory: Sendable {
    let path: String
    private let removed = Atomic<Bool>(false)

    init() throws {
        var template = Array("\(NSTemporaryDirectory())/distr-e2e-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        path = String(cString: made)
    }

    /// Removes the directory (once; later calls do nothing).
    func remove() {
        if !removed.exchange(true, ordering: .acquiringAndReleasing) { FileIO.removeTree(path) }
    }

    /// A backstop for tests that do not use `withTemporaryDirectory`.
    deinit { remove() }

    func write(_ name: String, _ text: String, mode: mode_t = 0o644) throws {
        if let slash = name.lastIndex(of: "/") { try FileIO.makeDirectories(path + "/" + name[..<slash]) }
        try FileIO.write(path + "/" + name, Array(text.utf8), mode: mode, exclusive: false)
    }

    func entries(_ sub: String = "") -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path + "/" + sub)) ?? []).sorted()
    }
}

/// One real `distr-worker` on 127.0.0.1 (or `bind`), port 0: a `WorkerProcess` whose stderr the
/// test watches.
final class TestWorker: Sendable {
    let process: TestProcess
    let port: Int
    let workDirectory: String
    private let worker: WorkerProcess

    /// `prefix` runs the worker through another program (`setpriv` to drop privileges, `ip netns exec`).
    /// `environment` is added to this process's own for the worker.
    init(
        secretFile: String, workDirectory: String, arguments: [String] = [], prefix: [String] = [], bind: String = "127.0.0.1",
        environment: [String: String] = [:]
    ) throws {
        try FileIO.makeDirectories(workDirectory)
        self.workDirectory = workDirectory
        let log = try FD.pipe()
        let stderr = OutputWatcher(fd: log.read)
        let configuration = WorkerProcess.Configuration(
            executable: Binaries.worker, secretFile: secretFile, workDirectory: workDirectory, bind: bind, grace: 1,
            extraArguments: arguments, prefix: prefix, log: .descriptor(log.write),
            environment: environment.isEmpty ? nil : Environment.all.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" })
        let started = Result { () throws(WorkerProcessError) in try WorkerProcess.start(configuration, until: .after(20)) }
        FD.close(log.write)
        let worker: WorkerProcess
        switch started {
        case .success(let started): worker = started
        case .failure(let error):
            _ = stderr.waitClosed(timeout: 10)
            throw TestFailure("\(error); its stderr:\n\(stderr.text)")
        }
        self.worker = worker
        port = worker.port
        let readyLine = OutputWatcher(ended: Array("distr-worker listening on \(worker.address)\n".utf8))
        process = TestProcess(pid: worker.pid, exit: worker.exit, stdout: readyLine, stderr: stderr)
    }

    /// `HOST:PORT` as the worker reported it.
    var peer: String { worker.address }

    /// SIGTERM, then SIGKILL if it is still running 20 s later (a test failure); waits for its
    /// stderr to end. Does nothing more once the worker has exited.
    func stop() {
        if !worker.stop(grace: 20) {
            Issue.record("worker \(worker.pid) still running 20 s after SIGTERM; killed. Its stderr:\n\(String(process.stderr.text.suffix(4000)))")
        }
        _ = process.stderr.waitClosed(timeout: 10)
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
        do {
            for index in 0..<count {
                workers.append(try TestWorker(secretFile: secretFile, workDirectory: root.path + "/work\(index)", arguments: workerArguments))
            }
        } catch {
            // No deinit runs for a cluster that was not made: stop the workers that did start.
            for worker in workers { worker.stop() }
            throw error
        }
        self.workers = workers
        peersFile = root.path + "/peers.txt"
        var text = "# test cluster\n"
        for (index, worker) in workers.enumerated() {
            text += worker.peer + (slots.map { " slots=\($0[index])" } ?? "") + "\n"
        }
        try FileIO.write(peersFile, Array(text.utf8), mode: 0o644, exclusive: false)
    }

    /// Stops the workers and removes the directory; `withTestCluster` calls it whatever the test does.
    func close() {
        for worker in workers { worker.stop() }
        root.remove()
    }

    /// A backstop for tests that do not use `withTestCluster`.
    deinit { close() }

    /// Starts `distr-master` against this cluster.
    func startMaster(_ arguments: [String], directory: String? = nil, environment: [String: String] = [:]) throws -> TestProcess {
        guard let sub = arguments.first else { throw TestFailure("no subcommand") }
        return try TestProcess(
            [Binaries.master, sub, "--peers", peersFile, "--secret-file", secretFile] + arguments.dropFirst(),
            directory: directory ?? root.path, environment: environment)
    }

    func master(_ arguments: [String], directory: String? = nil, environment: [String: String] = [:]) throws -> MasterRun {
        try TestProcess.run(startMaster(arguments, directory: directory, environment: environment))
    }

    /// Everything left in the workers' work directories (job directories, and records of jobs
    /// in `.distr-jobs`) except the file cache, the Python modules and the spare directories and
    /// records kept for the next jobs (`.distr-spare`), which outlive jobs.
    var leftoverJobDirectories: [String] {
        workers.flatMap { worker in
            let top = ((try? FileManager.default.contentsOfDirectory(atPath: worker.workDirectory)) ?? [])
                .filter { $0 != ".distr-cache" && $0 != ".distr-jobs" && $0 != ".distr-python" && $0 != ".distr-spare" }.map {
                    worker.workDirectory + "/" + $0
                }
            let records = ((try? FileManager.default.contentsOfDirectory(atPath: worker.workDirectory + "/.distr-jobs")) ?? [])
                .map { worker.workDirectory + "/.distr-jobs/" + $0 }
            return top + records
        }
    }
}

/// Runs `body` with a new cluster, then stops its workers and removes its directory, whether
/// `body` returns or throws.
func withTestCluster<Value>(
    workers count: Int, slots: [Int]? = nil, workerArguments: [String] = [], _ body: (TestCluster) throws -> Value
) throws -> Value {
    let cluster = try TestCluster(workers: count, slots: slots, workerArguments: workerArguments)
    defer { cluster.close() }
    return try body(cluster)
}

/// Runs `body` with a new temporary directory, then removes it, whether `body` returns or throws.
func withTemporaryDirectory<Value>(_ body: (TemporaryDirectory) throws -> Value) throws -> Value {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    return try body(directory)
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
    /// The descriptors `pid` (a worker) has open, apart from those of the job cgroups it keeps
    /// for the next jobs (`SpareControlGroups`: two each, for at most `limit` cgroups), which a
    /// leak test counts apart: how many are kept depends on how jobs overlapped.
    static func descriptors(of pid: pid_t) -> (others: Int, keptCgroups: Int) {
        let directory = "/proc/\(pid)/fd"
        // Unreadable: counted as none, and the test fails.
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []  // See above.
        let cgroups = names.filter { name in
            // Closed meanwhile: not a cgroup's.
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + name)) ?? ""  // See above.
            return target.hasPrefix("/sys/fs/cgroup/")
        }
        return (names.count - cgroups.count, cgroups.count)
    }

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

    /// The worker's own background compile of its Python modules (`python3 -m compileall`, at
    /// nice 19 after a start with a fresh copy): the worker's, like its sentinel, not a job's.
    /// A process it left mid-exec shows no arguments for a moment, and the compile, started
    /// through pyenv's shell scripts, execs several times: so this reads them with `arguments`.
    static func isModuleCompile(_ pid: pid_t) -> Bool {
        String(decoding: arguments(pid) ?? [], as: UTF8.self).contains("\0compileall\0")  // Gone: not one.
    }

    /// The compile, or a process it orphaned (reparented to the worker, the subreaper, in the
    /// compile's process group: a `python3` that is pyenv's shell script starts a few).
    static func isModuleCompileOrItsOrphan(_ pid: pid_t) -> Bool {
        isModuleCompile(pid) || ProcessTable.info(pid).map { isModuleCompile($0.processGroup) } == true
    }

    /// Live processes whose parent is `pid`: not zombies, and not in the middle of exiting.
    static func children(of pid: pid_t) -> [pid_t] {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return all.compactMap { pid_t($0) }.filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && fields[0] != "Z" && pid_t(fields[1]) == pid && !isExiting(child)
        }
    }

    /// `process PID (STAT FIELDS) PROGRAM ARGUMENTS`, for a failure message.
    static func describe(_ pid: pid_t) -> String {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "gone"  // Exited meanwhile.
        let program = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? "?"  // Exited meanwhile.
        let arguments = (try? FileIO.readAll("/proc/\(pid)/cmdline")) ?? []  // Exited meanwhile.
        return "process \(pid) (\(stat.prefix(60))) \(program): \(String(decoding: arguments.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self))"
    }

    /// Whether `pid` is exiting (gone, a zombie, or letting go of its memory): see `arguments`.
    static func isExiting(_ pid: pid_t) -> Bool { arguments(pid) == nil }

    /// The arguments of `pid`, nil when it is exiting (empty after 10 s without any: taken as
    /// not exiting). A process shows none for a moment twice:
    /// while it exits (it has let go of its memory and is not a zombie yet) and in the middle of
    /// an `execve` (its new program is mapped, its arguments not yet): then neither a worker nor
    /// its compile can be told by them (seen under load: the worker's compile, in one of its
    /// shell scripts' execs, counted as a job's leftover). So this waits, bounded, until the
    /// process shows its arguments or is gone. Kernel threads have none, but they are nobody's
    /// child here.
    static func arguments(_ pid: pid_t) -> [UInt8]? {
        let deadline = Clock.now + 10
        while Clock.now < deadline {
            guard let arguments = try? FileIO.readAll("/proc/\(pid)/cmdline") else { return nil }  // Gone: exited.
            if !arguments.isEmpty { return arguments }
            if ProcessTable.info(pid)?.isZombie ?? true { return nil }
            usleep(1000)  // A transition of the kernel's, not a readiness: nothing to be told of.
        }
        return []
    }
}

extension Trait where Self == TimeLimitTrait {
    /// The time limit of the tests that could hang: a guard against a hang, never a timing
    /// check. A synchronous test waits for one of the cooperative pool's threads (as many as
    /// cores: two on CI), and the limit counts that wait too, so it is set above the whole
    /// suite's run time on a loaded 2-core machine.
    static var hangGuard: Self { .timeLimit(.minutes(10)) }
}
