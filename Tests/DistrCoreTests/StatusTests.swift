import Testing

@testable import DistrCore

@Suite struct StatusTests {
    static let report = StateMachineFixtures.statusReport

    // MARK: messages

    @Test func statusMessages_roundTrip() throws {
        for message: ControlMessage in [
            .statusRequest(sentAt: 123_456_789), .statusReport(Self.report),
            .jobQueued(running: 2, maxJobs: 2, holders: ["10.0.0.1:5000", "[::1]:6000"]), .jobQueued(running: 0, maxJobs: 0, holders: []),
        ] {
            #expect(try ControlMessage.decode(type: message.type, payload: message.encoded()) == message)
        }
        #expect(ControlMessage.statusRequest(sentAt: 0).type == 6)
        #expect(ControlMessage.statusReport(Self.report).type == 16)
        #expect(ControlMessage.jobQueued(running: 0, maxJobs: 0, holders: []).type == 17)
    }

    @Test func statusReport_truncatedAtEveryLength_isRefused() {
        let payload = ControlMessage.statusReport(Self.report).encoded()
        for length in 0..<payload.count {
            #expect(throws: WireError.self) { try ControlMessage.decode(type: 16, payload: Array(payload.prefix(length))) }
        }
        #expect(throws: WireError.truncated) { try ControlMessage.decode(type: 16, payload: payload + [0]) }
    }

    @Test func statusReport_withMoreThanThreeLoads_isRefused() {
        var report = Self.report
        report.loadMilli = [1, 2, 3, 4]
        #expect(throws: WireError.refused("a status report carries at most 3 load averages, not 4")) {
            try ControlMessage.decode(type: 16, payload: ControlMessage.statusReport(report).encoded())
        }
    }

    @Test func statusReport_withNegativeCounts_isRefused() {
        for change: (inout StatusReport) -> Void in [{ $0.cores = -1 }, { $0.runningJobs = -2 }, { $0.maxJobs = -1 }, { $0.loadMilli = [-5] }] {
            var report = Self.report
            change(&report)
            #expect(throws: WireError.self) { try ControlMessage.decode(type: 16, payload: ControlMessage.statusReport(report).encoded()) }
        }
    }

    @Test func jobQueued_withNegativeCount_isRefused() {
        let payload = ControlMessage.jobQueued(running: -1, maxJobs: 1, holders: []).encoded()
        #expect(throws: WireError.refused("jobQueued with a negative count (-1 of 1)")) { try ControlMessage.decode(type: 17, payload: payload) }
    }

    @Test func clockOffset_isTheNTPEstimate() {
        // Master sends at 1000, worker (clock +500) receives at 1600 and answers at 1700, master reads at 1300.
        let report = StatusReport(
            distrVersion: "", protocolVersion: 2, hostName: "", operatingSystem: "", architecture: "", cores: 1, loadMilli: [],
            freeMemoryBytes: 0, workDirectory: "", freeDiskBytes: 0, runningJobs: 0, maxJobs: 0, masterAddress: "",
            receivedAt: 1600, sentAt: 1700)
        #expect(report.clockOffset(sentAt: 1000, receivedAt: 1300) == 500e-9)
        // A worker behind the master gives a negative offset, without overflow.
        #expect(report.clockOffset(sentAt: 3000, receivedAt: 3400) < 0)
    }

    // MARK: the probe's state machine

    @Test func probe_sendsRequestThenReportsTheReport() {
        var probe = StatusProbeProtocol()
        #expect(probe.start(now: 42) == [.send(.statusRequest(sentAt: 42))])
        #expect(probe.start(now: 43) == [])
        #expect(probe.received(.statusReport(Self.report)) == [.report(Self.report)])
        #expect(probe.state == .ended)
        #expect(probe.received(.statusReport(Self.report)) == [])
        #expect(probe.connectionEnded("closed") == [])
    }

    @Test func probe_workerFailure_isReportedAsSuch() {
        var probe = StatusProbeProtocol()
        _ = probe.start(now: 1)
        #expect(
            probe.received(.failure("unknown message type 6"))
                == [.failed("the worker did not answer the status request: unknown message type 6 (is it an older distr-worker?)")])
    }

    @Test func probe_otherMessage_isAViolation() {
        var probe = StatusProbeProtocol()
        _ = probe.start(now: 1)
        #expect(probe.received(.launch) == [.failed("protocol violation: the worker sent launch instead of a status report")])
    }

    @Test func probe_workerHeartbeatBeforeTheReport_isIgnored() {
        var probe = StatusProbeProtocol()
        _ = probe.start(now: 1)
        #expect(probe.received(.workerHeartbeat) == [])
        #expect(probe.received(.launch) == [.failed("protocol violation: the worker sent launch instead of a status report")])
    }

    @Test func probe_connectionLost_beforeTheReport() {
        var probe = StatusProbeProtocol()
        #expect(probe.connectionEnded("closed") == [])
        _ = probe.start(now: 1)
        #expect(
            probe.connectionEnded("connection closed by the peer") == [
                .failed("the connection ended before the status report (connection closed by the peer)")
            ])
    }

    @Test func workerProtocol_statusRequestAfterAJobStarted_isAViolation() {
        var machine = WorkerJobProtocol()
        _ = machine.received(.jobStart(StateMachineFixtures.spec))
        let actions = machine.received(.statusRequest(sentAt: 1))
        #expect(actions.first == .send(.failure("protocol violation: unexpected statusRequest while preparing")))
    }

    // MARK: job slots

    @Test func slots_overTheBound_queueInOrderAndAreGrantedOnRelease() {
        var slots = JobSlots(limit: 1)
        #expect(slots.request(id: 1, master: "m1:1") == .granted)
        #expect(slots.request(id: 2, master: "m2:2") == .queued(running: 1, holders: ["m1:1"]))
        #expect(slots.request(id: 3, master: "m3:3") == .queued(running: 1, holders: ["m1:1"]))
        #expect(slots.release(id: 1) == [2])
        #expect(slots.holders.map(\.master) == ["m2:2"])
        #expect(slots.release(id: 1) == [])
        #expect(slots.release(id: 2) == [3])
        #expect(slots.release(id: 3) == [])
        #expect(slots.running == 0)
    }

    @Test func slots_aWaiterThatLeaves_isNeverGranted() {
        var slots = JobSlots(limit: 1)
        _ = slots.request(id: 1, master: "a")
        _ = slots.request(id: 2, master: "b")
        _ = slots.request(id: 3, master: "c")
        #expect(slots.release(id: 2) == [])
        #expect(slots.release(id: 1) == [3])
    }

    @Test func slots_withoutBound_grantEverything() {
        var slots = JobSlots(limit: nil)
        for id in 1...50 { #expect(slots.request(id: UInt64(id), master: "m") == .granted) }
        #expect(slots.running == 50)
    }

    // MARK: failures and version mismatch

    @Test func versionMismatch_namesTheSideToUpgrade() {
        #expect(
            ConnectFailure.versionMismatch(node: "rpi-2", theirs: 1, ours: 2)
                == "node rpi-2 runs distr protocol 1, this master speaks 2: upgrade distr-worker on rpi-2")
        #expect(
            ConnectFailure.versionMismatch(node: "rpi-2", theirs: 3, ours: 2)
                == "node rpi-2 runs distr protocol 3, this master speaks 2: upgrade distr-master on this machine")
    }

    @Test func refusal_carriesTheWorkersVersion_andTheClientReadsIt() throws {
        let client = Handshake.Client(key: [UInt8](repeating: 1, count: 32), kind: .control)
        let refusal = Handshake.Server.refusal(.versionMismatch, version: 1)
        #expect(throws: WireError.versionMismatch(theirs: 1, ours: Handshake.version)) { try client.finish(reply: refusal) }
        // A worker advertising version 1 refuses a hello of this version, naming both.
        #expect(throws: WireError.versionMismatch(theirs: Handshake.version, ours: 1)) {
            try Handshake.Hello.checkPreamble(client.hello.encoded(), ours: 1)
        }
    }

    @Test func classify_namesEachKindOfFailure() {
        let address = "10.0.0.2:6969"
        func kind(_ error: any Error) -> String { ConnectFailure.classify(error, node: "n", address: address).kind }
        #expect(kind(SocketError.resolve(host: "nope", reason: "Name or service not known")) == "name not resolved")
        #expect(kind(SocketError.connect(address: address, SystemError("connect", errno: Errno.connectionRefused.rawValue))) == "refused")
        #expect(kind(SocketError.connect(address: address, SystemError("connect", errno: Errno.permissionDenied.rawValue))) == "unreachable")
        #expect(kind(SocketError.timedOut(address: address, seconds: 1)) == "timed out")
        #expect(kind(WireError.authenticationFailed("the worker does not hold the same cluster secret")) == "wrong secret")
        #expect(kind(WireError.authenticationFailed("the worker rejected this key")) == "wrong secret")
        #expect(kind(WireError.authenticationFailed("no handshake answer within 1 s")) == "handshake failed")
        #expect(kind(WireError.badMagic) == "not distr")
        #expect(kind(WireError.busy) == "busy")
        let mismatch = ConnectFailure.classify(WireError.versionMismatch(theirs: 1, ours: 2), node: "rpi-2", address: address)
        #expect(mismatch.kind == "version mismatch")
        #expect(mismatch.peerProtocol == 1)
        #expect(mismatch.message.hasSuffix("upgrade distr-worker on rpi-2"))
    }

    // MARK: the table and the JSON

    static let results = [
        PeerStatus(label: "rpi-0", outcome: .usable(report, clockOffset: 0.0004)),
        PeerStatus(label: "rpi-1:7000", outcome: .failed(ConnectFailure(kind: "refused", message: "connection refused at rpi-1:7000"))),
        PeerStatus(
            label: "rpi-2", outcome: .failed(ConnectFailure(kind: "version mismatch", message: "node rpi-2 runs distr protocol 1", peerProtocol: 1))),
    ]

    @Test func table_oneRowPerPeerAlignedThenTheFinalLine() {
        let lines = StatusTable.table(Self.results).split(separator: "\n").map(String.init)
        #expect(lines.count == 5)
        #expect(
            lines[0]
                == "PEER        STATUS            DISTR     HOST   OS/ARCH              CORES  LOAD  MEM FREE  DISK FREE  CLOCK    JOBS  SEES MASTER AS"
        )
        #expect(
            lines[1]
                == "rpi-0       ok                0.1.0/p2  rpi-2  Linux 6.1.0 aarch64  4      1.52  1.5 GiB   20.0 GiB   +0.4 ms  1/2   10.0.0.1:51234"
        )
        #expect(lines[2] == "rpi-1:7000  refused           connection refused at rpi-1:7000")
        #expect(lines[3] == "rpi-2       version mismatch  node rpi-2 runs distr protocol 1")
        #expect(lines[4] == "1 of 3 peers usable")
    }

    @Test func table_summaryCountsEveryPeer() {
        #expect(StatusTable.summary([]) == "0 of 0 peers usable")
        #expect(StatusTable.summary(Array(Self.results.prefix(1))) == "1 of 1 peer usable")
    }

    @Test func json_isOneObjectWithAPeersArray() {
        let json = StatusTable.json(Self.results)
        #expect(json.hasPrefix("{\n  \"usable\": 1,\n  \"total\": 3,\n  \"peers\": [\n"))
        #expect(json.contains("\"peer\": \"rpi-0\", \"usable\": true, \"distr_version\": \"0.1.0\", \"protocol_version\": 2"))
        #expect(json.contains("\"load\": [1.52, 0.80, 0.05]"))
        #expect(json.contains("\"clock_offset_seconds\": 0.0004"))
        #expect(json.contains("\"max_jobs\": 2, \"master_address\": \"10.0.0.1:51234\""))
        #expect(
            json.contains("{\"peer\": \"rpi-1:7000\", \"usable\": false, \"error\": \"refused\", \"message\": \"connection refused at rpi-1:7000\"}"))
        #expect(json.contains("\"error\": \"version mismatch\", \"message\": \"node rpi-2 runs distr protocol 1\", \"protocol_version\": 1}"))
        #expect(json.hasSuffix("}\n  ]\n}\n"))
        #expect(StatusTable.json([]) == "{\n  \"usable\": 0,\n  \"total\": 0,\n  \"peers\": [\n  ]\n}\n")
    }

    @Test func json_escapesWhatAPeerSays() {
        #expect(StatusTable.quote("a\"b\\c\nd\u{1}é") == "\"a\\\"b\\\\c\\nd\\u0001é\"")
    }

    @Test func units_areReadable() {
        #expect(StatusTable.bytes(512) == "512 B")
        #expect(StatusTable.bytes(1536) == "1.5 KiB")
        #expect(StatusTable.bytes(3 << 30) == "3.0 GiB")
        #expect(StatusTable.load(0) == "0.00")
        #expect(StatusTable.load(12_345) == "12.35")
        #expect(StatusTable.clock(-0.00025) == "-0.3 ms")
        #expect(StatusTable.clock(2.314) == "+2.31 s")
    }
}
