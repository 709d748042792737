import Testing

@testable import DistrCore

@Suite struct MasterLinkProtocolTests {
    typealias State = MasterLinkProtocol.State
    typealias Action = MasterLinkProtocol.Action
    typealias Fixtures = StateMachineFixtures

    typealias Outcome = StateMachineOutcome<Action, State>

    static let allStates: [State] = [.idle, .awaitingFileList, .awaitingReady, .ready, .launched, .ended]
    static let beforeLaunch: [State] = [.idle, .awaitingFileList, .awaitingReady, .ready]

    /// A link brought to `state` through its API, with the fixture job (three files, ranks 2 and 3).
    static func link(in state: State, spec: JobSpec = Fixtures.spec) -> MasterLinkProtocol {
        MasterLinkProtocol(spec: spec).reaching(
            state,
            through: [
                { $0.start() },
                { $0.received(.filesNeeded([0])) },
                { $0.received(.jobReady(directory: Fixtures.directory)) },
                { $0.launch() },
                { $0.received(.jobEnded(keptDirectory: nil)) },
            ])
    }

    /// What each state does with the worker's messages it accepts, by name; a failure ends any
    /// state but `ended` (which ignores everything), anything else is a violation.
    static let accepted: [State: [String: Outcome]] = [
        .awaitingFileList: ["filesNeeded": Outcome([.sendFiles([0])], .awaitingReady), "jobQueued": queued(.awaitingFileList)],
        .awaitingReady: ["jobReady": Outcome([.ready(directory: Fixtures.directory)], .ready), "jobQueued": queued(.awaitingReady)],
        .launched: [
            "output": Outcome([.output(rank: 2, stream: 1, timestamp: 5, bytes: [104, 105])], .launched),
            "rankExited": Outcome([.rankExited(rank: 3, status: .exited(0), endedByDistr: false)], .launched),
            "jobEnded": Outcome([.finished(keptDirectory: nil, error: nil)], .ended),
            // After launch a failure is kept: the exits and jobEnded that follow are still read.
            "failure": Outcome([], .launched),
            // The cause is kept; the SIGTERM exits and jobEnded follow.
            "workerShuttingDown": Outcome([], .launched),
        ],
    ]

    static func queued(_ state: State) -> Outcome {
        Outcome([.queued(running: 1, maxJobs: 1, holders: ["10.0.0.9:40000"])], state)
    }

    @Test func link_jobQueued_isReportedOnceOnly() {
        var link = Self.link(in: .awaitingFileList)
        let queued = ControlMessage.jobQueued(running: 2, maxJobs: 2, holders: ["a:1", "b:2"])
        #expect(link.received(queued) == [.queued(running: 2, maxJobs: 2, holders: ["a:1", "b:2"])])
        #expect(link.received(queued) == [])
        #expect(link.state == .awaitingFileList)
    }

    static func otherwise(_ message: ControlMessage, in state: State) -> Outcome {
        if state == .ended { return Outcome([], .ended) }
        // The worker's heartbeat changes nothing, in any state (its arrival is what counts).
        if message == .workerHeartbeat { return Outcome([], state) }
        if case .workerShuttingDown = message {
            return Outcome([.finished(keptDirectory: nil, error: "shut down before the job started")], .ended)
        }
        if case .failure(let reason) = message {
            return Outcome([.finished(keptDirectory: nil, error: "the worker refused the job: \(reason)")], .ended)
        }
        let error = "protocol violation: the worker sent \(message.name) while \(state)"
        return Outcome([.finished(keptDirectory: nil, error: error)], .ended)
    }

    @Test(arguments: allStates)
    func link_isReachableInEveryStateThroughTheAPI(_ state: State) {
        #expect(Self.link(in: state).state == state)
    }

    @Test(arguments: allStates)
    func link_everyMessageKind_inEveryState(_ state: State) {
        Self.link(in: state).expectEveryKind { Self.accepted[state]?[$0.name] ?? Self.otherwise($0, in: state) }
    }

    @Test func link_withoutFiles_awaitsReadyAndRefusesAFileList() {
        var link = MasterLinkProtocol(spec: Fixtures.makeSpec(files: 0))
        #expect(link.start() == [.send(.jobStart(Fixtures.makeSpec(files: 0)))])
        #expect(link.state == .awaitingReady)
        #expect(
            link.received(.filesNeeded([]))
                == [.finished(keptDirectory: nil, error: "protocol violation: the worker sent filesNeeded while awaitingReady")])
    }

    @Test func link_failureAfterLaunch_keepsReadingExitsAndEndsWithTheFailure() {
        var link = Self.link(in: .launched)
        #expect(link.received(.failure("disk full")) == [])
        #expect(link.received(.rankExited(rank: 2, status: .signaled(15), endedByDistr: true)).count == 1)
        #expect(link.received(.jobEnded(keptDirectory: nil)) == [.finished(keptDirectory: nil, error: "the worker failed the job: disk full")])
    }

    @Test func link_workerShuttingDownDuringTheJob_endsWithThatCause() {
        var link = Self.link(in: .launched)
        #expect(link.received(.workerShuttingDown(reason: "SIGTERM")) == [])
        #expect(link.received(.rankExited(rank: 2, status: .signaled(15), endedByDistr: true)).count == 1)
        #expect(link.received(.jobEnded(keptDirectory: nil)) == [.finished(keptDirectory: nil, error: "shut down during the job")])
    }

    @Test(arguments: allStates.filter { $0 != .ended })
    func link_silentWorker_isReportedAsStoppedAnsweringEvenAfterACancel(_ state: State) {
        var link = Self.link(in: state)
        _ = link.deliver(.cancel(reason: "another node failed"))
        let why = "stopped answering: no heartbeat for 5.0 s"
        #expect(link.connectionEnded(why, silent: true) == [.finished(keptDirectory: nil, error: why)])
    }

    @Test func link_failureAfterLaunchThenLostConnection_reportsTheFailure() {
        var link = Self.link(in: .launched)
        _ = link.received(.failure("disk full"))
        #expect(link.connectionEnded("closed") == [.finished(keptDirectory: nil, error: "the worker failed the job: disk full")])
    }

    @Test func link_start_onlyOnce() {
        var link = Self.link(in: .awaitingFileList)
        #expect(link.start() == [])
        #expect(link.state == .awaitingFileList)
    }

    @Test func link_cancelBeforeStart_isHeldAndSentRightAfterJobStart() {
        var link = MasterLinkProtocol(spec: Fixtures.spec)
        #expect(link.deliver(.cancel(reason: "interrupted")) == [])
        #expect(link.start() == [.send(.jobStart(Fixtures.spec)), .send(.cancel(reason: "interrupted"))])
        // Held once: a later launch sends nothing (the link is cancelled) and nothing is repeated.
        _ = link.received(.filesNeeded([]))
        _ = link.received(.jobReady(directory: Fixtures.directory))
        #expect(link.launch() == [])
        #expect(link.state == .ready)
    }

    @Test(arguments: [State.awaitingFileList, .awaitingReady, .ready, .launched])
    func link_cancelAfterStart_isSentAtOnce(_ state: State) {
        var link = Self.link(in: state)
        #expect(link.deliver(.cancel(reason: "stop")) == [.send(.cancel(reason: "stop"))])
    }

    @Test func link_peerExited_isHeldUntilLaunchAndSentRightAfterIt() {
        var link = MasterLinkProtocol(spec: Fixtures.spec)
        #expect(link.deliver(.peerExited(rank: 0, status: 1)) == [])
        #expect(link.start() == [.send(.jobStart(Fixtures.spec))])
        #expect(link.deliver(.peerExited(rank: 1, status: 2)) == [])
        _ = link.received(.filesNeeded([1]))
        #expect(link.deliver(.peerExited(rank: 4, status: 3)) == [])
        _ = link.received(.jobReady(directory: Fixtures.directory))
        #expect(link.deliver(.peerExited(rank: 5, status: 4)) == [])
        #expect(
            link.launch() == [
                .send(.launch), .send(.peerExited(rank: 0, status: 1)), .send(.peerExited(rank: 1, status: 2)),
                .send(.peerExited(rank: 4, status: 3)), .send(.peerExited(rank: 5, status: 4)),
            ])
        #expect(link.deliver(.peerExited(rank: 6, status: 5)) == [.send(.peerExited(rank: 6, status: 5))])
        #expect(link.launch() == [])
    }

    @Test(arguments: [State.idle, .awaitingFileList, .awaitingReady, .launched, .ended])
    func link_launchOutsideReady_doesNothing(_ state: State) {
        var link = Self.link(in: state)
        #expect(link.launch() == [])
        #expect(link.state == state)
    }

    @Test func link_afterTheEnd_deliversNothing() {
        var link = Self.link(in: .ended)
        #expect(link.deliver(.cancel(reason: "late")) == [])
        #expect(link.deliver(.peerExited(rank: 0, status: 0)) == [])
        #expect(link.connectionEnded("closed") == [])
        #expect(link.failedLocally("late") == [])
    }

    @Test(arguments: [[], [0], [2], [0, 2], [0, 1, 2]])
    func link_filesNeeded_validIndices_areStreamed(_ indices: [Int]) {
        var link = Self.link(in: .awaitingFileList)
        #expect(link.received(.filesNeeded(indices)) == [.sendFiles(indices)])
        #expect(link.state == .awaitingReady)
    }

    @Test(arguments: [[3], [-1], [0, 7], [1, 0], [2, 0, 1], [1, 1], [0, 0, 2]])
    func link_filesNeeded_outOfRangeUnsortedOrDuplicate_isAViolation(_ indices: [Int]) {
        var link = Self.link(in: .awaitingFileList)
        let error = "protocol violation: the worker asked for files the job does not have"
        #expect(link.received(.filesNeeded(indices)) == [.finished(keptDirectory: nil, error: error)])
        #expect(link.state == .ended)
    }

    @Test(arguments: [
        ControlMessage.output(rank: 0, stream: 1, timestamp: 0, bytes: [1]),
        .output(rank: 4, stream: 2, timestamp: 0, bytes: [1]),
        .rankExited(rank: 1, status: .exited(0), endedByDistr: false),
        .rankExited(rank: -1, status: .signaled(9), endedByDistr: true),
    ])
    func link_reportsAboutRanksOfOtherWorkers_areAViolation(_ message: ControlMessage) {
        var link = Self.link(in: .launched)
        let error = "protocol violation: the worker sent \(message.name) while launched"
        #expect(link.received(message) == [.finished(keptDirectory: nil, error: error)])
    }

    @Test(arguments: [State.awaitingFileList, .awaitingReady, .ready])
    func link_connectionLostAfterCancelBeforeLaunch_finishesWithoutError(_ state: State) {
        var link = Self.link(in: state)
        _ = link.deliver(.cancel(reason: "stop"))
        #expect(link.connectionEnded("closed") == [.finished(keptDirectory: nil, error: nil)])
        #expect(link.state == .ended)
    }

    @Test(arguments: beforeLaunch + [.launched])
    func link_connectionLostWithoutCancel_isAnError(_ state: State) {
        var link = Self.link(in: state)
        #expect(link.connectionEnded("reset") == [.finished(keptDirectory: nil, error: "connection lost during the job (reset)")])
    }

    @Test func link_connectionLostAfterCancelWhileLaunched_isAnError() {
        // A launched worker that was cancelled still owes its ranks' exits and jobEnded.
        var link = Self.link(in: .launched)
        _ = link.deliver(.cancel(reason: "stop"))
        #expect(link.connectionEnded("reset") == [.finished(keptDirectory: nil, error: "connection lost during the job (reset)")])
    }

    @Test(arguments: beforeLaunch + [.launched])
    func link_localFailure_finishesWithThatError(_ state: State) {
        var link = Self.link(in: state)
        #expect(link.failedLocally("cannot read app") == [.finished(keptDirectory: nil, error: "cannot read app")])
        #expect(link.state == .ended)
    }

    @Test func link_keptDirectory_comesFromJobReadyUnlessJobEndedNamesOne() {
        let spec = Fixtures.makeSpec(keepDirectory: true)
        var link = Self.link(in: .launched, spec: spec)
        #expect(link.received(.jobEnded(keptDirectory: nil)) == [.finished(keptDirectory: Fixtures.directory, error: nil)])
        link = Self.link(in: .launched, spec: spec)
        #expect(link.received(.jobEnded(keptDirectory: "/elsewhere")) == [.finished(keptDirectory: "/elsewhere", error: nil)])
        // A failure still tells where the directory was kept.
        link = Self.link(in: .launched, spec: spec)
        #expect(link.connectionEnded("reset") == [.finished(keptDirectory: Fixtures.directory, error: "connection lost during the job (reset)")])
    }

    @Test func link_keptDirectory_notRecordedUnlessAskedFor() {
        var link = Self.link(in: .launched)
        #expect(link.failedLocally("x") == [.finished(keptDirectory: nil, error: "x")])
    }

    @Test func link_wholeJob_inOrder() {
        var link = MasterLinkProtocol(spec: Fixtures.spec)
        var actions = link.start()
        actions += link.received(.filesNeeded([1, 2]))
        actions += link.received(.jobReady(directory: Fixtures.directory))
        actions += link.launch()
        actions += link.received(.output(rank: 3, stream: 2, timestamp: 1, bytes: [33]))
        actions += link.received(.rankExited(rank: 2, status: .exited(0), endedByDistr: false))
        actions += link.received(.rankExited(rank: 3, status: .exited(1), endedByDistr: false))
        actions += link.received(.jobEnded(keptDirectory: nil))
        #expect(
            actions == [
                .send(.jobStart(Fixtures.spec)), .sendFiles([1, 2]), .ready(directory: Fixtures.directory), .send(.launch),
                .output(rank: 3, stream: 2, timestamp: 1, bytes: [33]), .rankExited(rank: 2, status: .exited(0), endedByDistr: false),
                .rankExited(rank: 3, status: .exited(1), endedByDistr: false), .finished(keptDirectory: nil, error: nil),
            ])
    }

    @Test func link_holdsStdinUntilLaunchAndDropsItAfterTheEnd() {
        var link = MasterLinkProtocol(spec: Fixtures.spec)
        let input = ControlMessage.stdinData(rank: 2, bytes: [104, 105])
        #expect(link.deliver(input).isEmpty)
        #expect(link.start() == [.send(.jobStart(Fixtures.spec))])
        #expect(link.deliver(.stdinData(rank: 2, bytes: [])).isEmpty)
        _ = link.received(.filesNeeded([0]))
        _ = link.received(.jobReady(directory: Fixtures.directory))
        #expect(link.launch() == [.send(.launch), .send(input), .send(.stdinData(rank: 2, bytes: []))])
        #expect(link.deliver(input) == [.send(input)])
        _ = link.received(.jobEnded(keptDirectory: nil))
        #expect(link.deliver(input).isEmpty)
    }

    /// A file upload in progress asks `isCancelled` before each frame: it turns true with the
    /// cancel, in every state before launch, and stays false for any other message.
    @Test(arguments: beforeLaunch)
    func cancelStopsAnUpload(state: State) {
        var link = Self.link(in: state)
        _ = link.deliver(.peerExited(rank: 0, status: 1))
        _ = link.deliver(.stdinData(rank: 2, bytes: [1]))
        #expect(!link.isCancelled)
        _ = link.deliver(.cancel(reason: "node 1 stopped answering"))
        #expect(link.isCancelled)
    }
}
