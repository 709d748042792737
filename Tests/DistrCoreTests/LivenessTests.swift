import Testing

@testable import DistrCore

/// The heartbeat schedule and the silence verdict, on an injected clock (no sockets, no sleeps).
@Suite struct LivenessTests {
    @Test func sendsAHeartbeatEveryIntervalAndWaitsInBetween() {
        var liveness = Liveness(timeout: 5, now: 100)
        #expect(liveness.interval == 1)
        #expect(liveness.check(at: 100.5) == .wait(until: 101))
        #expect(liveness.check(at: 101) == .sendHeartbeat)
        liveness.sent(at: 101)
        liveness.heard(at: 101)
        #expect(liveness.check(at: 101.2) == .wait(until: 102))
    }

    @Test func shortTimeoutsSendSeveralHeartbeatsPerTimeout() {
        let liveness = Liveness(timeout: 2, now: 0)
        #expect(liveness.interval == 0.5)
    }

    @Test func silenceForTheTimeoutExpiresEvenWhileHeartbeatsGoOut() {
        var liveness = Liveness(timeout: 5, now: 0)
        for second in 1...4 {
            liveness.sent(at: Double(second))
            #expect(liveness.check(at: Double(second) + 0.1) == .wait(until: Double(second) + 1))
        }
        liveness.sent(at: 4.9)
        #expect(liveness.check(at: 5.0) == .expired(silence: 5.0))
    }

    @Test func anythingHeardPushesTheDeadlineBack() {
        var liveness = Liveness(timeout: 5, now: 0)
        liveness.heard(at: 4)
        #expect(liveness.deadline == 9)
        liveness.sent(at: 8.5)
        #expect(liveness.check(at: 8.9) == .wait(until: 9))
        #expect(liveness.check(at: 9) == .expired(silence: 5))
    }

    @Test func bytesWaitingUnreadCountOnlyWhenTheyGrow() {
        var liveness = Liveness(timeout: 5, now: 0)
        liveness.observe(pendingBytes: 40, at: 3)
        #expect(liveness.lastHeard == 3)
        // The same bytes still unread (a busy reader, a frozen peer): no news.
        liveness.observe(pendingBytes: 40, at: 7)
        #expect(liveness.check(at: 8) == .expired(silence: 5))
        // Fewer (the reader took some) is not news either; the reader notes what it reads.
        liveness.observe(pendingBytes: 10, at: 7.5)
        #expect(liveness.lastHeard == 3)
        liveness.observe(pendingBytes: 11, at: 7.9)
        #expect(liveness.deadline == 12.9)
    }

    @Test func timesThatGoBackwardsAreIgnored() {
        var liveness = Liveness(timeout: 5, now: 10)
        liveness.heard(at: 3)
        liveness.sent(at: 3)
        #expect(liveness.lastHeard == 10)
        #expect(liveness.lastSent == 10)
    }

    @Test func silenceIsDescribedToOneDecimal() {
        #expect(Liveness.describeSilence(5.04) == "no heartbeat for 5.0 s")
        #expect(Liveness.describeSilence(12.36) == "no heartbeat for 12.4 s")
        #expect(WireError.silent(seconds: 5).description == "stopped answering: no heartbeat for 5.0 s")
    }

    @Test func heartbeatMessagesRoundTrip() throws {
        for message in [ControlMessage.heartbeat, .workerHeartbeat, .workerShuttingDown(reason: "bye")] {
            #expect(try ControlMessage.decode(type: message.type, payload: message.encoded()) == message)
        }
        #expect(ControlMessage.heartbeat.type == 9)
        #expect(ControlMessage.workerHeartbeat.type == 18)
        #expect(ControlMessage.workerShuttingDown(reason: "").type == 19)
        #expect(throws: WireError.truncated) { try ControlMessage.decode(type: 9, payload: [0]) }
    }
}
