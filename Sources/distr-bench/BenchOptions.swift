import DistrCore

/// The case groups, in the order a full run measures them; `--only` picks some.
enum BenchGroup: String, CaseIterable, Sendable {
    case launch, ship, relay, gather, messaging, busy, collectives, scale, python

    var summary: String {
        switch self {
        case .launch: "exec true on 1, 4, 16 workers vs posix_spawn of as many /bin/true (mpirun -np N true)"
        case .ship: "a 100 MiB bundle of 1,000 files to 4 workers, first time and cached, vs one plain socket per worker"
        case .relay: "4 ranks x 50 MB of 100-byte lines, live and --gather, vs a pipe to cat (mpirun -np 4); lines checked"
        case .gather: "--gather of 10, 20, 40 MB from one rank: held output costs time linear in its size"
        case .messaging: "latency 8 B/1 KiB/64 KiB, bandwidth 1/16/64 MiB: same node, two workers, two namespaces; one 16 MiB message at a time"
        case .busy: "8 B latency on one node while a busy loop runs on every core, vs a blocking socket"
        case .collectives: "barrier, broadcast 8 MB, allReduce 1M doubles on 4 and 8 ranks of one node (mpi4py)"
        case .scale: "64 workers: exec true, each worker's memory at rest and after 1,000 jobs"
        case .python: "Python ranks: 4-rank ring, small-object latency, 16 MiB numpy bandwidth (mpi4py)"
        }
    }
}

/// distr-bench's command line.
struct BenchOptions: Sendable {
    var json = false
    var quick = false
    var namespaces = true
    var compareMPI = false
    var groups: [BenchGroup] = BenchGroup.allCases

    enum Parsed {
        case run(BenchOptions)
        case help
        case version
    }

    static let usage = "usage: distr-bench [--quick] [--json] [--only GROUP[,GROUP...]] [--compare-mpi] [--no-netns] [--python-only]"

    static var help: String {
        let groups = BenchGroup.allCases.map { "  \($0.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0))\($0.summary)" }
        return """
            distr-bench: measures distr beside a plain baseline run at the same time (posix_spawn, a
            plain socket, a pipe to cat), prints each case's medians, their ratio, the target of
            issue 9 and whether it is met (MISSED when not). Workers and ranks run on this machine;
            distr-master and distr-worker are taken from the directory distr-bench is in (build all
            products in release: swift build -c release).

            \(usage)

            Options:
              --quick          fewer repetitions and smaller outputs (each group well under a minute)
              --json           print one JSON object (machine, date, command, a 'cases' array with
                               name, unit, distr, baseline, against, ratio, target, met, problem)
              --only LIST      run only these groups (comma-separated; repeatable)
              --compare-mpi    also measure Open MPI and mpi4py (mpirun --oversubscribe, as root
                               too) where a case has an equivalent: launch, relay, collectives,
                               scale, python. Each comparison is a row of its own, 'vs mpirun' or
                               'vs mpi4py' in its name; without mpirun (or mpi4py) they are skipped
                               with a note
              --no-netns       skip the two-network-namespace messaging case (it needs root and ip)
              --python-only    the same as --only python
              -h, --help       show this help
              --version        show distr's version

            Groups:
            \(groups.joined(separator: "\n"))

            Exit status: 0 when the benchmark ran (missed targets included), 1 when a case could not
            run, 64 for a usage error.
            """
    }

    static func parse(_ arguments: [String]) throws(UsageError) -> Parsed {
        var options = BenchOptions()
        var only: [BenchGroup] = []
        var scanner = ArgumentScanner(arguments)
        // The flags that set one field, and the value they set it to.
        let flags: [String: (field: WritableKeyPath<BenchOptions, Bool>, value: Bool)] = [
            "--json": (\.json, true), "--quick": (\.quick, true), "--no-netns": (\.namespaces, false), "--compare-mpi": (\.compareMPI, true),
        ]
        while let token = scanner.next() {
            switch token {
            case .option("-h", _), .option("--help", _): return .help
            case .option("--version", _): return .version
            case .option(let name, let inline) where flags[name] != nil:
                try scanner.flag(name, inline: inline)
                if let flag = flags[name] { options[keyPath: flag.field] = flag.value }
            case .option("--python-only", let inline):
                try scanner.flag("--python-only", inline: inline)
                only.append(.python)
            case .option("--only", let inline):
                let list = try scanner.value(of: "--only", inline: inline)
                for name in list.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let group = BenchGroup(rawValue: String(name)) else {
                        let names = BenchGroup.allCases.map(\.rawValue).joined(separator: ", ")
                        throw UsageError("unknown group '\(name)' for --only (groups: \(names))")
                    }
                    only.append(group)
                }
            case .option(let name, _): throw UsageError("unknown option '\(name)'")
            case .positional(let value): throw UsageError("unexpected argument '\(value)'")
            }
        }
        if !only.isEmpty { options.groups = BenchGroup.allCases.filter { only.contains($0) } }
        return .run(options)
    }
}
