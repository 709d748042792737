/// Where the master finds its workers.
public enum PeerSource: Sendable, Equatable {
    case file(String)
    case hosts(String)
    case local(Int)
}

/// How output is shown.
public enum OutputMode: String, Sendable, Equatable {
    /// Each line as it arrives, `[ID] line`.
    case live
    /// Per node, in node order, after the job.
    case group
    /// Nodes with identical output printed once, ranks folded (`[0-3,5]`).
    case gather
}

/// What to run and how: everything `distr-master run` and `exec` take.
public struct MasterOptions: Sendable {
    public enum Mode: Sendable, Equatable {
        /// One parallel program: slots expanded, first failure ends the job unless keepGoing.
        case run(program: String, arguments: [String])
        /// A shell command on every node; nodes independent.
        case exec(command: [String])
    }

    public var mode: Mode
    public var peers: PeerSource = .file("peers.txt")
    public var secretFile: String?
    public var connectTimeout: Double = 5
    public var files: [String] = []
    public var environment: [String] = []
    public var timeout: Double?
    public var keepGoing = false
    public var output: OutputMode = .live
    public var keepDirectory = false
    public var quiet = false
    /// Seconds between SIGTERM and SIGKILL for the local workers' ranks.
    public var grace: Double = 2

    public init(mode: Mode) { self.mode = mode }
}

/// The documented exit codes for failures of the cluster rather than of the program.
public enum ExitCode {
    public static let ok: Int32 = 0
    public static let usage: Int32 = 64
    public static let unavailable: Int32 = 69
    public static let software: Int32 = 70
    public static let timeout: Int32 = 124
    public static let interrupted: Int32 = 130
}
