@preconcurrency import Glibc
import DistrCore
import Dispatch
import Foundation

/// One line of the report.
struct BenchCase: Codable {
    var name: String
    var unit: String
    var distr: Double
    var baseline: Double?
    /// distr / baseline for times, baseline / distr... no: always distr divided by baseline.
    var ratio: Double?
    var target: String?
}

/// Runs every case and prints the table (or JSON).
struct Bench {
    let directory: String
    let root: String
    let secretFile: String
    var quick = false
    var cases: [BenchCase] = []
    var notes: [String] = []

    init(quick: Bool) throws {
        let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")  // Not a link: use argv[0].
        let me = link ?? CommandLine.arguments[0]
        directory = (me as NSString).deletingLastPathComponent
        var template = Array("\(NSTemporaryDirectory())/distr-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        root = String(cString: made)
        secretFile = root + "/secret"
        try ClusterSecret.generate(path: secretFile)
        self.quick = quick
    }

    var master: String { directory + "/distr-master" }
    var workerBinary: String { directory + "/distr-worker" }
    var me: String { directory + "/distr-bench" }

    func startWorker(_ index: Int, prefix: [String] = [], bind: String = "127.0.0.1") throws -> WorkerProcess {
        let work = root + "/w\(index)"
        try FileIO.makeDirectories(work)
        return try WorkerProcess.start(
            WorkerProcess.Configuration(
                executable: workerBinary, secretFile: secretFile, workDirectory: work, bind: bind, prefix: prefix,
                log: .file(root + "/worker\(index).log")),
            until: .after(20))
    }

    static func median(_ values: [Double]) -> Double { RankBench.median(values) }

    mutating func add(_ name: String, unit: String, distr: Double, baseline: Double?, target: String? = nil) {
        let ratio = baseline.map { $0 > 0 ? distr / $0 : 0 }
        cases.append(BenchCase(name: name, unit: unit, distr: distr, baseline: baseline, ratio: ratio, target: target))
    }

    // MARK: launch

    /// `distr-master exec true` on N local workers against spawning N `/bin/true` directly.
    mutating func launch(workers ports: [Int]) throws {
        let runs = quick ? 5 : 15
        for count in [1, 4, 16] where count <= ports.count {
            let hosts = ports.prefix(count).map { "127.0.0.1:\($0)" }.joined(separator: ",")
            var distr: [Double] = []
            var direct: [Double] = []
            for _ in 0..<runs {
                let start = DistrCore.Clock.now
                let status = try Subprocess(
                    [master, "exec", "-q", "--hosts", hosts, "--secret-file", secretFile, "--", "true"], stderrPath: root + "/master.log"
                ).wait()
                distr.append(DistrCore.Clock.now - start)
                guard status == .exited(0) else {
                    let bytes = try? FileIO.readAll(root + "/master.log")  // No log: the failure is reported without it.
                    let log = bytes.map { String(decoding: $0, as: UTF8.self) } ?? ""
                    throw NodeError.badArgument("exec true failed: \(status)\n\(log)")
                }
                direct.append(try spawnTrue(count))
            }
            add("launch: exec true on \(count) rank(s)", unit: "ms", distr: Self.median(distr) * 1e3, baseline: Self.median(direct) * 1e3)
            if let mpirun = Self.which("mpirun") {
                var times: [Double] = []
                for _ in 0..<runs {
                    let start = DistrCore.Clock.now
                    try Subprocess(
                        [mpirun, "--oversubscribe", "-np", "\(count)", "true"],
                        environment: ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]
                    ).wait()
                    times.append(DistrCore.Clock.now - start)
                }
                add(
                    "launch: exec true on \(count) rank(s) vs mpirun -np \(count) true", unit: "ms", distr: Self.median(distr) * 1e3,
                    baseline: Self.median(times) * 1e3)
            }
        }
    }

    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
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

    // MARK: messaging

    /// Runs the messaging ranks and records their RESULT lines under `label`.
    mutating func messaging(label: String, peers: String, transport: String, environment: [String] = [], prefix: [String] = []) throws {
        let peersFile = root + "/peers-\(label.filter { $0.isLetter })"
        try FileIO.write(peersFile, Array(peers.utf8), mode: 0o644, exclusive: false)
        let env = environment.flatMap { ["--env", $0] }
        let job = try Subprocess(
            prefix + [master, "run", "-q", "--peers", peersFile, "--secret-file", secretFile] + env + ["--", me, "--rank", "messaging", transport],
            stderrPath: root + "/master.log")
        let status = job.wait()
        guard status == .exited(0) else { throw NodeError.badArgument("messaging job (\(label)) failed: \(status); see \(root)/master.log") }
        for line in job.text.split(separator: "\n") {
            guard let start = line.range(of: "RESULT ") else { continue }
            let fields = line[start.upperBound...].split(separator: "\t")
            guard fields.count == 3, let distr = Double(fields[1]), let baseline = Double(fields[2]) else { continue }
            let name = String(fields[0])
            if name.hasPrefix("latency") {
                let target = name.hasPrefix("latency 8 B") ? "≤ 1.5x" : nil
                add("\(name), \(label)", unit: "µs one way", distr: distr, baseline: baseline, target: target)
            } else {
                add("\(name), \(label)", unit: "MB/s", distr: distr, baseline: baseline, target: name.hasSuffix("64 MiB") ? "≥ 0.70x" : nil)
            }
        }
    }

    mutating func allReduce(ports: [Int]) throws {
        let hosts = ports.prefix(4).map { "127.0.0.1:\($0)" }.joined(separator: ",")
        let job = try Subprocess(
            [master, "run", "-q", "--hosts", hosts, "--secret-file", secretFile, "--", me, "--rank", "allreduce"], stderrPath: root + "/master.log")
        guard job.wait() == .exited(0) else { throw NodeError.badArgument("allreduce job failed; see \(root)/master.log") }
        for line in job.text.split(separator: "\n") {
            guard let start = line.range(of: "RESULT ") else { continue }
            let fields = line[start.upperBound...].split(separator: "\t")
            if fields.count == 3, let ms = Double(fields[1]) { add(String(fields[0]), unit: "ms", distr: ms, baseline: nil) }
        }
    }

    // MARK: output

    func printTable() {
        func format(_ value: Double?) -> String {
            guard let value else { return "-" }
            return value >= 100 ? String(format: "%.0f", value) : String(format: "%.2f", value)
        }
        let header = ["case", "unit", "distr", "baseline", "ratio", "target"]
        var rows = [header]
        for item in cases {
            rows.append([
                item.name, item.unit, format(item.distr), format(item.baseline), item.ratio.map { String(format: "%.2fx", $0) } ?? "-",
                item.target ?? "",
            ])
        }
        let widths = (0..<header.count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        for note in notes { print("note: \(note)") }
    }

    func printJSON() {
        struct Report: Codable {
            var cases: [BenchCase]
            var notes: [String]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            let data = try encoder.encode(Report(cases: cases, notes: notes))
            print(String(decoding: data, as: UTF8.self))
        } catch {
            // A time that is not a number (NaN) cannot be written as JSON: say so rather than print nothing.
            CurrentProcess.printError("distr-bench: cannot write the report as JSON: \(error)\n")
        }
    }
}
