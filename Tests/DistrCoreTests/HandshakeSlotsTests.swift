import Testing

@testable import DistrCore

@Suite struct HandshakeSlotsTests {
    /// Admits each source in turn and returns the tickets; every admission must succeed without
    /// displacing anyone.
    static func fill(_ slots: inout HandshakeSlots, _ sources: [String], trusted: Bool = false) -> [UInt64] {
        sources.compactMap { source in
            guard case .admitted(let ticket, nil) = slots.admit(source: source, trusted: trusted) else { return nil }
            return ticket
        }
    }

    @Test func slots_perSourceCap_refusesNamingTheSource() {
        var slots = HandshakeSlots(capacity: 10, perSource: 2)
        #expect(Self.fill(&slots, ["10.0.0.1", "10.0.0.1", "10.0.0.2"]).count == 3)
        #expect(
            slots.admit(source: "10.0.0.1", trusted: false)
                == .refused("2 connections from 10.0.0.1 are already in their handshake (limit 2)"))
        #expect(slots.count == 3)
    }

    @Test func slots_perSourceCap_freesUpOnRelease() {
        var slots = HandshakeSlots(capacity: 10, perSource: 1)
        let tickets = Self.fill(&slots, ["a"])
        slots.release(tickets[0])
        #expect(Self.fill(&slots, ["a"]).count == 1)
    }

    @Test func slots_full_displacesTheOldestOfTheBusiestStranger() {
        var slots = HandshakeSlots(capacity: 5, perSource: 5)
        // b is the oldest overall, but a holds the most.
        let tickets = Self.fill(&slots, ["b", "a", "a", "a", "c"])
        #expect(slots.admit(source: "d", trusted: false) == .admitted(ticket: 5, displacing: tickets[1]))
        #expect(slots.count == 5)
        // a and its two remaining slots are still the busiest.
        #expect(slots.admit(source: "d", trusted: false) == .admitted(ticket: 6, displacing: tickets[2]))
    }

    @Test func slots_full_aNewcomerMayDisplaceItsOwnSource() {
        var slots = HandshakeSlots(capacity: 3, perSource: 3)
        let tickets = Self.fill(&slots, ["a", "a", "b"])
        #expect(slots.admit(source: "a", trusted: false) == .admitted(ticket: 3, displacing: tickets[0]))
    }

    @Test func slots_trustedNewcomers_exceedThePerSourceCap() {
        var slots = HandshakeSlots(capacity: 10, perSource: 1)
        #expect(Self.fill(&slots, ["node", "node", "node"], trusted: true).count == 3)
        // A stranger from that address is still held to the cap.
        guard case .refused = slots.admit(source: "node", trusted: false) else {
            Issue.record("an untrusted connection went past the per-source cap")
            return
        }
    }

    @Test func slots_strangers_neverDisplaceTrustedHolders() {
        var slots = HandshakeSlots(capacity: 2, perSource: 1)
        _ = Self.fill(&slots, ["node1", "node2"], trusted: true)
        #expect(slots.admit(source: "x", trusted: false) == .refused("all 2 handshake slots are held by the nodes of running jobs"))
        #expect(slots.count == 2)
    }

    @Test func slots_strangers_displaceOnlyStrangersWhenTrustedHoldersAreMixedIn() {
        var slots = HandshakeSlots(capacity: 3, perSource: 3)
        let trusted = Self.fill(&slots, ["node", "node"], trusted: true)
        let stranger = Self.fill(&slots, ["x"])
        #expect(trusted.count == 2)
        #expect(slots.admit(source: "y", trusted: false) == .admitted(ticket: 3, displacing: stranger[0]))
    }

    @Test func slots_trustedNewcomer_displacesAStrangerFirst() {
        var slots = HandshakeSlots(capacity: 3, perSource: 3)
        _ = Self.fill(&slots, ["node", "node"], trusted: true)
        let stranger = Self.fill(&slots, ["x"])
        #expect(slots.admit(source: "node2", trusted: true) == .admitted(ticket: 3, displacing: stranger[0]))
    }

    @Test func slots_trustedNewcomer_displacesTheOldestOfTheBusiestTrustedWhenNoStrangerHoldsOne() {
        var slots = HandshakeSlots(capacity: 3, perSource: 1)
        let tickets = Self.fill(&slots, ["n1", "n2", "n2"], trusted: true)
        #expect(slots.admit(source: "n3", trusted: true) == .admitted(ticket: 3, displacing: tickets[1]))
    }

    @Test func slots_releasingUnknownOrDisplacedTickets_isHarmless() {
        var slots = HandshakeSlots(capacity: 2, perSource: 2)
        let tickets = Self.fill(&slots, ["a", "a"])
        #expect(slots.admit(source: "b", trusted: false) == .admitted(ticket: 2, displacing: tickets[0]))
        // The displaced handshake's thread ends and releases its ticket: already gone.
        slots.release(tickets[0])
        slots.release(999)
        #expect(slots.count == 2)
        // a still holds one slot, not zero: one more from a is within its cap of 2.
        slots.release(2)
        #expect(Self.fill(&slots, ["a"]) == [3])
        #expect(slots.admit(source: "a", trusted: false) == .refused("2 connections from a are already in their handshake (limit 2)"))
    }

    @Test func slots_releasingEverything_returnsCountsToZero() {
        var slots = HandshakeSlots(capacity: 5, perSource: 2)
        let tickets = Self.fill(&slots, ["a", "a", "b"]) + Self.fill(&slots, ["c", "c"], trusted: true)
        #expect(tickets.count == 5)
        for ticket in tickets { slots.release(ticket) }
        for ticket in tickets { slots.release(ticket) }
        #expect(slots.count == 0)
        // Every source has its whole allowance again.
        #expect(Self.fill(&slots, ["a", "a", "b", "b"]).count == 4)
    }

    @Test func slots_capacityAndPerSource_atLeastOne() {
        var slots = HandshakeSlots(capacity: 0, perSource: -3)
        #expect(slots.capacity == 1)
        #expect(slots.perSource == 1)
        #expect(Self.fill(&slots, ["a"]).count == 1)
    }

    @Test func logLimiter_burstThenSuppression_thenTheNextWindowReportsTheCount() {
        var limiter = LogRateLimiter(burst: 2, interval: 10)
        #expect(limiter.lines(for: "r1", now: 100) == ["r1"])
        #expect(limiter.lines(for: "r2", now: 101) == ["r2"])
        #expect(limiter.lines(for: "r3", now: 102) == [])
        #expect(limiter.lines(for: "r4", now: 109.9) == [])
        #expect(limiter.lines(for: "r5", now: 110) == ["2 more refused connection(s) not logged in the last 10 s", "r5"])
        #expect(limiter.lines(for: "r6", now: 111) == ["r6"])
        #expect(limiter.lines(for: "r7", now: 112) == [])
    }

    @Test func logLimiter_nothingSuppressed_noCountLine() {
        var limiter = LogRateLimiter(burst: 3, interval: 5)
        #expect(limiter.lines(for: "a", now: 0) == ["a"])
        #expect(limiter.lines(for: "b", now: 5) == ["b"])
        #expect(limiter.lines(for: "c", now: 60) == ["c"])
    }
}
