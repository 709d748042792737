import Testing

@testable import DistrCore

@Suite struct WorkerJobProtocolTests {
    typealias State = WorkerJobProtocol.State
    typealias Action = WorkerJobProtocol.Action
    typealias Fixtures = StateMachineFixtures

    typealias Outcome = StateMachineOutcome<Action, State>

    static let allStates: [State] = [.awaitingJob, .preparing, .receivingFiles, .ready, .running, .ending, .ended]
    static let beforeLaunch: [State] = [.awaitingJob, .preparing, .receivingFiles, .ready]
    static let cancelledBeforeStart = Action.abandon(reason: "cancelled before it started: stop", error: false)

    /// A worker brought to `state` through the public API only, the way the worker's threads do.
    static func worker(in state: State) -> WorkerJobProtocol {
        WorkerJobProtocol().reaching(
            state,
            through: [
                { $0.received(.jobStart(Fixtures.spec)) },
                { $0.prepared(needed: [0], hasManifest: true, complete: false) },
                { $0.filesWritten(complete: true) },
                { $0.received(.launch) },
                { $0.received(.cancel(reason: "stop")) },
                { $0.ranksFinished() },
            ])
    }

    /// What each state does with the messages it accepts, by message name. Every other kind is a
    /// protocol violation (see `failedOutcome`).
    static let accepted: [State: [String: Outcome]] = [
        .awaitingJob: [
            "jobStart": Outcome([.prepare(Fixtures.spec)], .preparing), "statusRequest": Outcome([.reportStatus(sentAt: 7)], .ended),
        ],
        .preparing: ["cancel": Outcome([cancelledBeforeStart], .ended)],
        .receivingFiles: [
            "fileData": Outcome([.writeFiles(Fixtures.fileBytes)], .receivingFiles),
            "fileDigests": Outcome([.checkDigests(Fixtures.fileDigests)], .receivingFiles),
            "cancel": Outcome([cancelledBeforeStart], .ended),
        ],
        .ready: ["launch": Outcome([.startRanks], .running), "cancel": Outcome([cancelledBeforeStart], .ended)],
        .running: [
            "cancel": Outcome([.cancel(reason: "stop")], .ending),
            "peerExited": Outcome([.relayPeerExit(rank: 0, status: 1)], .running),
            "stdinData": Outcome([.writeStdin(rank: 2, bytes: [7])], .running),
        ],
        .ending: [
            "cancel": Outcome([], .ending), "peerExited": Outcome([.relayPeerExit(rank: 0, status: 1)], .ending),
            "stdinData": Outcome([], .ending),
        ],
        .ended: [:],
    ]

    /// A failure (local, or a message out of order): before launch the worker tells the master
    /// and leaves nothing behind; while running it tells the master and ends the ranks.
    static func failedOutcome(_ reason: String, in state: State) -> Outcome {
        let report = Action.send(.failure(reason))
        return beforeLaunch.contains(state)
            ? Outcome([report, .abandon(reason: reason, error: true)], .ended)
            : lateOutcome(in: state, cancel: reason, sending: [report])
    }

    /// After launch: a running job is cancelled (and reports its end later); one already ending
    /// or ended ignores the event, too late to object.
    static func lateOutcome(in state: State, cancel reason: String, sending: [Action] = []) -> Outcome {
        state == .running ? Outcome(sending + [.cancel(reason: reason)], .ending) : Outcome([], state)
    }

    @Test func fixtures_holdOneMessageOfEveryKind() {
        let types = Set(Fixtures.oneOfEachKind.map(\.type))
        #expect(types == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
        #expect(Set(Fixtures.oneOfEachKind.map(\.name)).count == Fixtures.oneOfEachKind.count)
    }

    @Test(arguments: allStates)
    func worker_isReachableInEveryStateThroughTheAPI(_ state: State) {
        #expect(Self.worker(in: state).state == state)
    }

    @Test(arguments: allStates)
    func worker_everyMessageKind_inEveryState(_ state: State) {
        Self.worker(in: state).expectEveryKind { message in
            // The master's heartbeat changes nothing, in any state (its arrival is what counts).
            message == .heartbeat
                ? Outcome([], state)
                : Self.accepted[state]?[message.name]
                    ?? Self.failedOutcome("protocol violation: unexpected \(message.name) while \(state)", in: state)
        }
    }

    @Test(arguments: [State.preparing, .receivingFiles, .ready])
    func worker_cancelBeforeLaunch_abandonsWithoutError(_ state: State) {
        var worker = Self.worker(in: state)
        #expect(worker.received(.cancel(reason: "stop")) == [Self.cancelledBeforeStart])
        #expect(worker.state == .ended)
    }

    @Test func worker_cancelWhileRunning_cancelsThenReportsEndWhenRanksFinish() {
        var worker = Self.worker(in: .running)
        #expect(worker.received(.cancel(reason: "stop")) == [.cancel(reason: "stop")])
        #expect(worker.received(.cancel(reason: "again")) == [])
        #expect(worker.received(.peerExited(rank: 1, status: 143)) == [.relayPeerExit(rank: 1, status: 143)])
        #expect(worker.ranksFinished() == [.reportEnd])
        #expect(worker.state == .ended)
        #expect(worker.ranksFinished() == [])
    }

    @Test(arguments: [State.preparing, .receivingFiles, .ready, .running])
    func worker_duplicateJobStart_isAViolation(_ state: State) {
        var worker = Self.worker(in: state)
        let actions = worker.received(.jobStart(Fixtures.spec))
        #expect(actions.first == .send(.failure("protocol violation: unexpected jobStart while \(state)")))
    }

    @Test(arguments: [State.preparing, .ready])
    func worker_fileDataWhenNoFilesAreExpected_isAViolation(_ state: State) {
        var worker = Self.worker(in: state)
        #expect(worker.received(.fileData([1])).first == .send(.failure("protocol violation: unexpected fileData while \(state)")))
        #expect(worker.state == .ended)
    }

    @Test(arguments: [State.awaitingJob, .preparing, .receivingFiles])
    func worker_launchBeforeReady_isAViolation(_ state: State) {
        var worker = Self.worker(in: state)
        #expect(worker.received(.launch).first == .send(.failure("protocol violation: unexpected launch while \(state)")))
        #expect(worker.state == .ended)
    }

    @Test(arguments: allStates)
    func worker_connectionLost_abandonsBeforeLaunchAndCancelsWhileRunning(_ state: State) {
        var worker = Self.worker(in: state)
        let actions = worker.connectionEnded("reset")
        let abandon = Action.abandon(reason: "the master connection ended before the job started (reset)", error: true)
        let expected =
            Self.beforeLaunch.contains(state)
            ? Outcome([abandon], .ended) : Self.lateOutcome(in: state, cancel: "the master connection was lost (reset)")
        #expect(Outcome(actions, worker.state) == expected)
    }

    @Test(arguments: allStates)
    func worker_localFailure_reportsItAndCleansUp(_ state: State) {
        var worker = Self.worker(in: state)
        let actions = worker.failed("disk full")
        let expected = Self.failedOutcome("disk full", in: state)
        #expect(Outcome(actions, worker.state) == expected)
    }

    struct PreparedCase: Sendable, CustomTestStringConvertible {
        var needed: [Int]
        var hasManifest: Bool
        var complete: Bool
        var expected: Outcome
        var testDescription: String { "needed \(needed), manifest \(hasManifest), complete \(complete)" }
    }

    @Test(arguments: [
        // Some files must come from the master.
        PreparedCase(needed: [0, 2], hasManifest: true, complete: false, expected: Outcome([.send(.filesNeeded([0, 2]))], .receivingFiles)),
        // Everything came from the cache: the list is still sent (empty), then the job is ready.
        PreparedCase(needed: [], hasManifest: true, complete: true, expected: Outcome([.send(.filesNeeded([])), .register], .ready)),
        // No files at all: the master expects no list.
        PreparedCase(needed: [], hasManifest: false, complete: true, expected: Outcome([.register], .ready)),
    ])
    func worker_prepared_asksForMissingFilesOrRegisters(_ test: PreparedCase) {
        var worker = Self.worker(in: .preparing)
        let actions = worker.prepared(needed: test.needed, hasManifest: test.hasManifest, complete: test.complete)
        #expect(Outcome(actions, worker.state) == test.expected)
    }

    @Test func worker_filesWritten_registersOnlyOnceTheLastFileIsWhole() {
        var worker = Self.worker(in: .receivingFiles)
        #expect(worker.received(.fileData([7])) == [.writeFiles([7])])
        #expect(worker.filesWritten(complete: false) == [])
        #expect(worker.state == .receivingFiles)
        #expect(worker.filesWritten(complete: true) == [.register])
        #expect(worker.state == .ready)
        #expect(worker.filesWritten(complete: true) == [])
    }

    @Test(arguments: [State.awaitingJob, .receivingFiles, .ready, .running, .ending, .ended])
    func worker_preparedOutsidePreparing_isIgnored(_ state: State) {
        var worker = Self.worker(in: state)
        #expect(worker.prepared(needed: [0], hasManifest: true, complete: true) == [])
        #expect(worker.state == state)
    }

    @Test(arguments: [State.awaitingJob, .preparing, .ready, .running, .ending, .ended])
    func worker_filesWrittenOutsideReceiving_isIgnored(_ state: State) {
        var worker = Self.worker(in: state)
        #expect(worker.filesWritten(complete: true) == [])
        #expect(worker.state == state)
    }

    @Test(arguments: beforeLaunch + [.ended])
    func worker_ranksFinishedWhenNoRanksRan_isIgnored(_ state: State) {
        var worker = Self.worker(in: state)
        #expect(worker.ranksFinished() == [])
        #expect(worker.state == state)
    }

    @Test func worker_callbacksArrivingAfterAbandon_doNothing() {
        // The cancel overtakes the preparation that was already under way.
        var worker = Self.worker(in: .preparing)
        _ = worker.received(.cancel(reason: "stop"))
        #expect(worker.prepared(needed: [0], hasManifest: true, complete: false) == [])
        #expect(worker.filesWritten(complete: true) == [])
        #expect(worker.failed("late") == [])
        #expect(worker.connectionEnded("closed") == [])
        #expect(worker.state == .ended)
    }

    @Test func worker_wholeJob_inOrder() {
        var worker = WorkerJobProtocol()
        var actions = worker.received(.jobStart(Fixtures.spec))
        actions += worker.prepared(needed: [1], hasManifest: true, complete: false)
        actions += worker.received(.fileData([1]))
        actions += worker.filesWritten(complete: false)
        actions += worker.received(.fileData([2]))
        actions += worker.filesWritten(complete: true)
        actions += worker.received(.launch)
        actions += worker.received(.peerExited(rank: 0, status: 0))
        actions += worker.ranksFinished()
        #expect(
            actions == [
                .prepare(Fixtures.spec), .send(.filesNeeded([1])), .writeFiles([1]), .writeFiles([2]), .register, .startRanks,
                .relayPeerExit(rank: 0, status: 0), .reportEnd,
            ])
        #expect(worker.state == .ended)
    }

    @Test func worker_stdinData_onlyForItsStdinRanksAndNotAfterTheEnd() {
        var worker = Self.worker(in: .running)
        #expect(worker.received(.stdinData(rank: 2, bytes: [1, 2])) == [.writeStdin(rank: 2, bytes: [1, 2])])
        #expect(worker.received(.stdinData(rank: 2, bytes: [])) == [.writeStdin(rank: 2, bytes: [])])
        let reason = "protocol violation: stdinData for rank 2, which does not read stdin here or whose input has ended"
        #expect(worker.received(.stdinData(rank: 2, bytes: [3])) == [.send(.failure(reason)), .cancel(reason: reason)])
        #expect(worker.state == .ending)

        // Rank 3 runs here but does not read stdin; rank 0 reads it but runs elsewhere.
        for rank in [3, 0] {
            var other = Self.worker(in: .running)
            let why = "protocol violation: stdinData for rank \(rank), which does not read stdin here or whose input has ended"
            #expect(other.received(.stdinData(rank: rank, bytes: [1])) == [.send(.failure(why)), .cancel(reason: why)])
        }
    }
}

@Suite struct StdinFeederTests {
    /// Reads `fd` to its end.
    static func readAll(_ fd: Int32) -> [UInt8] {
        var all: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while let n = try? FD.read(fd, into: &buffer), n > 0 { all += buffer[0..<n] }  // An error ends the input like EOF.
        return all
    }

    @Test func feeder_writesEverythingInOrderThenCloses() throws {
        let pipe = try FD.pipe()
        defer { FD.close(pipe.read) }
        let feeder = StdinFeeder(rank: 0, fd: pipe.write)
        var expected: [UInt8] = []
        for index in 0..<200 {
            let chunk = [UInt8](repeating: UInt8(index), count: 1000 + index)
            expected += chunk
            #expect(feeder.enqueue(chunk))
        }
        #expect(feeder.enqueue([]))
        #expect(Self.readAll(pipe.read) == expected)
    }

    @Test func feeder_dropsInputPastItsLimitAndClosesTheRanksStdin() throws {
        let pipe = try FD.pipe()
        defer { FD.close(pipe.read) }
        let chunk = [UInt8](repeating: 1, count: 64 << 10)
        let feeder = StdinFeeder(rank: 0, fd: pipe.write, limit: 100 << 10)
        // Nobody reads: one chunk fills the pipe, one may block in write; the third and fourth
        // wait here and pass the limit.
        let accepted = (0..<4).map { _ in feeder.enqueue(chunk) }
        #expect(accepted.contains(false))
        #expect(feeder.enqueue(chunk), "after the drop later input is discarded silently")
        let received = Self.readAll(pipe.read)
        #expect(received.count <= 2 * chunk.count)
    }
}
