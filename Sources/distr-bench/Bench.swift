@preconcurrency import Glibc
import DistrCore
import Dispatch
import Foundation

/// Runs the cases and prints the table (or JSON).
struct Bench {
    let directory: String
    let root: String
    let secretFile: String
    let options: BenchOptions
    var cases: [BenchCase] = []
    var notes: [String] = []
    /// Loopback workers shared by the cases, started as cases need them.
    var pool: [WorkerProcess] = []
    /// Workers a case started for itself and left running (the namespace pair).
    var others: [WorkerProcess] = []
    /// Workers started so far: worker N works in `workDirectory(N)`.
    private(set) var startedWorkers = 0
    /// `pythonSetup()`'s answer, looked up once (the collectives and python groups both ask).
    var pythonFound: PythonSetup??

    var quick: Bool { options.quick }

    init(options: BenchOptions) throws {
        let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")  // Not a link: use argv[0].
        let me = link ?? CommandLine.arguments[0]
        directory = (me as NSString).deletingLastPathComponent
        var template = Array("\(NSTemporaryDirectory())/distr-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        root = String(cString: made)
        secretFile = root + "/secret"
        try ClusterSecret.generate(path: secretFile)
        self.options = options
        _ = try PythonModules.install(root: root + "/python")  // The note (no python3 to compile with): the Python group says so.
    }

    var master: String { directory + "/distr-master" }
    var workerBinary: String { directory + "/distr-worker" }
    var me: String { directory + "/distr-bench" }

    func workDirectory(_ index: Int) -> String { root + "/w\(index)" }

    /// The Python modules every worker uses, installed and compiled once before any starts, as
    /// on a node whose worker has run for a while: a worker's start is not what is measured.
    var pythonModules: String { root + "/python" }

    func configuration(_ index: Int, prefix: [String] = [], bind: String = "127.0.0.1") throws -> WorkerProcess.Configuration {
        let work = workDirectory(index)
        try FileIO.makeDirectories(work)
        return WorkerProcess.Configuration(
            executable: workerBinary, secretFile: secretFile, workDirectory: work, bind: bind, extraArguments: ["--python-dir", pythonModules],
            prefix: prefix, log: .file(root + "/worker\(index).log"))
    }

    /// Starts `count` fresh workers at once (each with its own, empty, work directory and cache).
    mutating func startWorkers(_ count: Int, prefix: [String] = [], bind: String = "127.0.0.1") throws -> [WorkerProcess] {
        let first = startedWorkers
        startedWorkers += count
        let configurations = try (first..<first + count).map { try configuration($0, prefix: prefix, bind: bind) }
        return try WorkerProcess.start(configurations, until: .after(30))
    }

    /// The ports of the first `count` shared loopback workers, starting those not yet running.
    mutating func ports(_ count: Int) throws -> [Int] {
        if pool.count < count { pool += try startWorkers(count - pool.count) }
        return pool.prefix(count).map(\.port)
    }

    /// A peers file with one line per entry (`127.0.0.1:PORT slots=4`).
    func peersFile(_ name: String, _ lines: [String]) throws -> String {
        let path = root + "/peers-\(name)"
        try FileIO.write(path, Array((lines.joined(separator: "\n") + "\n").utf8), mode: 0o644, exclusive: false)
        return path
    }

    static func median(_ values: [Double]) -> Double { RankBench.median(values) }

    mutating func add(
        _ name: String, unit: String, distr: Double?, baseline: Double?, against: String, target: Target? = nil, problem: String? = nil
    ) {
        cases.append(BenchCase(name: name, unit: unit, distr: distr, baseline: baseline, against: against, target: target, problem: problem))
    }

    /// The text of the log a failed command wrote, for its error.
    func log(_ path: String) -> String {
        let bytes = try? FileIO.readAll(path)  // No log: the failure is reported without it.
        return String(decoding: (bytes ?? []).suffix(2000), as: UTF8.self)
    }

    /// Runs `distr-bench --rank ARGUMENTS` as a job on `peers` (started through `prefix`, with
    /// `environment` for every rank) and returns the job's RESULT lines.
    /// - Throws: when the job does not exit 0, naming `what`, with the end of the master's log.
    func rankJob(
        _ arguments: [String], peers: String, what: String, timeout: Int = 300, environment: [String] = [], prefix: [String] = []
    ) throws -> [(name: String, distr: Double, baseline: Double?)] {
        let job = try Subprocess(
            prefix + [master, "run", "-q", "--timeout", "\(timeout)", "--peers", peers, "--secret-file", secretFile]
                + environment.flatMap { ["--env", $0] } + ["--", me, "--rank"] + arguments,
            stderrPath: root + "/master.log")
        let status = job.wait()
        guard status == .exited(0) else { throw NodeError.badArgument("\(what) failed: \(status)\n\(log(root + "/master.log"))") }
        return RankBench.results(job.text)
    }

    /// Runs a command to the end and returns its wall time in seconds. Its stdout goes to
    /// `stdoutPath`, or to /dev/null (no pipe, no thread reading it: the command is timed as
    /// `spawnTrue` times `/bin/true`, spawned and waited for).
    /// - Throws: when it does not exit 0 (with the end of its stderr).
    @discardableResult
    func time(
        _ arguments: [String], environment: [String: String] = [:], stdoutPath: String? = nil, stdinPath: String? = nil, timeout: Double = 900,
        what: String
    ) throws -> Double {
        let logPath = root + "/command.log"
        // Emptied, not removed: a file made again right after one was deleted costs ext4 without
        // a journal a scan for an inode (docs/performance.md), inside the timing.
        truncate(logPath, 0)
        let start = DistrCore.Clock.now
        let process = try Subprocess(
            arguments, environment: environment, stderrPath: logPath, stdoutPath: stdoutPath ?? "/dev/null", stdinPath: stdinPath)
        guard let status = process.wait(until: .after(timeout)) else {
            throw NodeError.badArgument("\(what) did not finish within \(Int(timeout)) s (killed)")
        }
        let seconds = DistrCore.Clock.now - start
        guard status == .exited(0) else { throw NodeError.badArgument("\(what) failed: \(status)\n\(log(logPath))") }
        return seconds
    }

    // MARK: MPI

    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }

    static let mpirunEnvironment = [
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1",
    ]

    /// `mpirun --oversubscribe` (with `--allow-run-as-root` as root) when `--compare-mpi` asks for
    /// it and it is installed; nil otherwise, with a note saying why once.
    mutating func mpirun() -> [String]? {
        guard options.compareMPI else { return nil }
        guard let path = Self.which("mpirun") else {
            let note = "Open MPI comparisons skipped: no mpirun on PATH (apt-get install openmpi-bin libopenmpi-dev)"
            if !notes.contains(note) { notes.append(note) }
            return nil
        }
        return [path, "--oversubscribe"] + (getuid() == 0 ? ["--allow-run-as-root"] : [])
    }

    /// The median time of `runs` runs of an Open MPI command; nil (with a note) when one fails
    /// or hangs (`mpirun -np 64` can, on a loaded machine): MPI's trouble must not end the group.
    mutating func timeMPI(_ arguments: [String], runs: Int, stdoutPath: String? = nil, timeout: Double = 60, what: String) -> Double? {
        var times: [Double] = []
        for _ in 0..<runs {
            do {
                times.append(try time(arguments, environment: Self.mpirunEnvironment, stdoutPath: stdoutPath, timeout: timeout, what: what))
            } catch {
                notes.append("\(what): \(error); its comparison is left out")
                return nil
            }
        }
        return Self.median(times)
    }

    // MARK: launch

    /// `distr-master exec true` on 1, 4 and 16 local workers (one rank each) against spawning as
    /// many `/bin/true` directly, and against `mpirun -np N true`.
    mutating func launch() throws {
        let runs = quick ? 5 : 15
        let ports = try ports(16)
        let mpirun = mpirun()
        for count in [1, 4, 16] {
            let hosts = ports.prefix(count).map { "127.0.0.1:\($0)" }.joined(separator: ",")
            var distr: [Double] = []
            var direct: [Double] = []
            for _ in 0..<runs {
                distr.append(
                    try time([master, "exec", "-q", "--hosts", hosts, "--secret-file", secretFile, "--", "true"], what: "exec true on \(count)"))
                direct.append(try spawnTrue(count))
            }
            let name = "launch: exec true on \(count) rank\(count == 1 ? "" : "s")"
            add(
                name, unit: "ms", distr: Self.median(distr) * 1e3, baseline: Self.median(direct) * 1e3,
                against: "posix_spawn of \(count) /bin/true, waited for", target: count == 4 ? .ratioAtMost(3) : nil)
            if let mpirun, let mpi = timeMPI(mpirun + ["-np", "\(count)", "true"], runs: quick ? 3 : 7, what: "mpirun -np \(count) true") {
                add(
                    name + " vs mpirun", unit: "ms", distr: Self.median(distr) * 1e3, baseline: mpi * 1e3,
                    against: "mpirun -np \(count) true", target: count == 4 ? .ratioAtMost(0.1) : nil)
            }
        }
        // What the harness adds to a timed command: /bin/true timed as distr-master is, against
        // the floor's in-process spawn of it.
        var timed: [Double] = []
        var spawned: [Double] = []
        for _ in 0..<20 {
            timed.append(try time(["/bin/true"], what: "/bin/true"))
            spawned.append(try spawnTrue(1))
        }
        notes.append(
            "launch: /bin/true timed as distr-master is took \(Target.number(Self.median(timed) * 1e3)) ms, spawned in-process "
                + "\(Target.number(Self.median(spawned) * 1e3)) ms (what the harness adds to every distr and mpirun time)")
        notes.append(
            "launch: distr is a whole distr-master process (start, connect, run, collect); the floor is posix_spawn of /bin/true in-process")
    }

    /// Spawns `count` /bin/true with posix_spawn and waits for all: the floor for any launcher.
    func spawnTrue(_ count: Int) throws -> Double {
        let group = DispatchGroup()
        let start = DistrCore.Clock.now
        for _ in 0..<count {
            group.enter()
            _ = try Spawner.spawn(SpawnRequest(arguments: ["/bin/true"], environment: [], stdout: 1, stderr: 2)) { _ in group.leave() }
        }
        group.wait()
        return DistrCore.Clock.now - start
    }
}
