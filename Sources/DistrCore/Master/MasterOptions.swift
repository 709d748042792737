/// Where the master finds its workers.
package enum PeerSource: Sendable, Equatable {
    case file(String)
    case hosts(String)
    case local(Int)
}

/// How output is shown.
package enum OutputMode: String, Sendable, Equatable {
    /// Each line as it arrives, `[ID] line`.
    case live
    /// Per node, in node order, after the job.
    case group
    /// Nodes with identical output printed once, ranks folded (`[0-3,5]`).
    case gather
}

/// Which ranks read the master's stdin (`--stdin`, `--stdin all`); the others read `/dev/null`.
package enum StdinTarget: Sendable, Equatable {
    case none
    case firstRank
    case allRanks
}

/// What to run and how: everything `distr-master run` and `exec` take.
package struct MasterOptions: Sendable {
    package enum Mode: Sendable, Equatable {
        /// One parallel program: slots expanded, first failure ends the job unless keepGoing.
        case run(program: String, arguments: [String])
        /// A shell command on every node; nodes independent.
        case exec(command: [String])
    }

    package var mode: Mode
    package var peers: PeerSource = .file("peers.txt")
    package var secretFile: String?
    package var connectTimeout: Double = 5
    /// Seconds a worker may be silent (no heartbeat) before it is given up (see `Liveness`).
    package var nodeTimeout: Double = Liveness.defaultTimeout
    package var files: [String] = []
    package var environment: [String] = []
    package var timeout: Double?
    package var keepGoing = false
    package var output: OutputMode = .live
    /// Prefix each line with the local time the worker read it (`--timestamps`).
    package var timestamps = false
    /// Also write each rank's stdout and stderr to DIR/<id>.out and DIR/<id>.err (`--output-dir`).
    package var outputDirectory: String?
    /// Bytes of held output (`--group`, `--gather`) a rank keeps in memory before spilling (`--spill-after`).
    package var spillAfter = OutputPrinter.defaultMemoryLimitPerRank
    package var keepDirectory = false
    package var quiet = false
    /// Run on the workers that can be reached, renumbered 0..k-1, instead of failing.
    package var skipUnreachable = false
    package var stdin: StdinTarget = .none
    /// `run`: ship local files named in the program's arguments (see `RunPlan`).
    package var shipArguments = true
    /// Seconds between SIGTERM and SIGKILL for the local workers' ranks.
    package var grace: Double = 2

    package init(mode: Mode) { self.mode = mode }
}

/// The documented exit codes for failures of the cluster rather than of the program.
package enum ExitCode {
    package static let ok: Int32 = 0
    package static let usage: Int32 = 64
    package static let unavailable: Int32 = 69
    package static let software: Int32 = 70
    package static let timeout: Int32 = 124
    package static let interrupted: Int32 = 130
}
