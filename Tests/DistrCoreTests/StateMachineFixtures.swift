import Testing

@testable import DistrCore

/// Shared inputs for the state machine tests (WorkerJobProtocol, MasterLinkProtocol).
enum StateMachineFixtures {
    static let fileBytes: [UInt8] = [1, 2, 3]
    static let directory = "/var/distr/jobs/j1"

    /// A job of four ranks on two workers; this worker (index 1) runs ranks 2 and 3, and rank 2
    /// reads the master's stdin.
    static func makeSpec(files: Int = 3, keepDirectory: Bool = false) -> JobSpec {
        let placements = (0..<4).map { rank in
            RankPlacement(rank: rank, host: "10.0.0.\(rank / 2 + 1)", port: 7000, worker: rank / 2, label: "node\(rank / 2)")
        }
        let manifest = (0..<files).map { ManifestEntry(path: "file\($0)", mode: 0o644, size: 3, digest: [UInt8](repeating: 0, count: 32)) }
        return JobSpec(
            jobID: "j1", arguments: ["./app"], environment: [], localRanks: [2, 3], placements: placements,
            keepDirectory: keepDirectory, jobKey: [UInt8](repeating: 9, count: 32), manifest: manifest, workerIndex: 1,
            stdinRanks: [0, 2])
    }

    static let spec = makeSpec()
    static let fileDigests = [FileDigest(index: 0, digest: [UInt8](repeating: 5, count: 32))]

    /// One message of every kind, in both directions. The ranks named (2, 3) are this worker's.
    static let oneOfEachKind: [ControlMessage] = [
        .jobStart(spec),
        .fileData(fileBytes),
        .fileDigests(fileDigests),
        .cancel(reason: "stop"),
        .peerExited(rank: 0, status: 1),
        .launch,
        .stdinData(rank: 2, bytes: [7]),
        .jobReady(directory: directory),
        .output(rank: 2, stream: 1, timestamp: 5, bytes: [104, 105]),
        .rankExited(rank: 3, status: .exited(0), endedByDistr: false),
        .jobEnded(keptDirectory: nil),
        .failure("no space left"),
        .filesNeeded([0]),
        .statusRequest(sentAt: 7),
        .statusReport(statusReport),
        .jobQueued(running: 1, maxJobs: 1, holders: ["10.0.0.9:40000"]),
        .workerShuttingDown(reason: "SIGTERM"),
        .heartbeat,
        .workerHeartbeat,
    ]

    static let statusReport = StatusReport(
        distrVersion: "0.1.0", protocolVersion: 2, hostName: "rpi-2", operatingSystem: "Linux 6.1.0", architecture: "aarch64",
        cores: 4, loadMilli: [1520, 800, 50], freeMemoryBytes: 3 << 29, workDirectory: "/tmp", freeDiskBytes: 20 << 30,
        runningJobs: 1, maxJobs: 2, masterAddress: "10.0.0.1:51234", receivedAt: 1_000_000_500, sentAt: 1_000_000_700)
}

/// The actions of one step of a state machine and the state it leaves the machine in.
struct StateMachineOutcome<Action: Equatable & Sendable, State: Equatable & Sendable>: Equatable, Sendable {
    var actions: [Action]
    var state: State
    init(_ actions: [Action], _ state: State) {
        self.actions = actions
        self.state = state
    }
}

/// A job-protocol state machine as the table-driven tests drive it.
protocol ControlStateMachine {
    associatedtype State: Equatable & Sendable
    associatedtype Action: Equatable & Sendable
    var state: State { get }
    mutating func received(_ message: ControlMessage) -> [Action]
}

extension WorkerJobProtocol: ControlStateMachine {}
extension MasterLinkProtocol: ControlStateMachine {}

extension ControlStateMachine {
    typealias Step = (inout Self) -> [Action]

    /// This machine taken through `steps`, in order, until it is in `state` (through its API
    /// only, as the threads that drive it would).
    func reaching(_ state: State, through steps: [Step]) -> Self {
        var machine = self
        for step in steps where machine.state != state { _ = step(&machine) }
        return machine
    }

    /// Feeds one message of every kind to a copy of this machine and checks each outcome.
    func expectEveryKind(_ expected: (ControlMessage) -> StateMachineOutcome<Action, State>, sourceLocation: SourceLocation = #_sourceLocation) {
        for message in StateMachineFixtures.oneOfEachKind {
            var machine = self
            let actions = machine.received(message)
            #expect(
                StateMachineOutcome(actions, machine.state) == expected(message), "\(message.name) while \(state)",
                sourceLocation: sourceLocation)
        }
    }
}
