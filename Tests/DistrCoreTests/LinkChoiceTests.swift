import Testing

@testable import DistrCore

/// Two ranks of different workers choosing their connection (`LinkChoice`), with every order in
/// which their dials, signals and answers can meet, without sockets.
struct PairSimulation {
    /// A TCP connection dialled by side `by`: what has happened to it so far.
    struct Dial {
        var up = false
        /// The target's worker handed it to the target (before the dialler's verdict).
        var arrived = false
        var saidBothWays = false
        var offerSeen = false
        var answer: Int?
        var answerSeen = false
        /// The dialler shut its sending side (it sends nothing on it).
        var closed = false
    }

    var choices: [LinkChoice]
    var dials: [Dial?] = [nil, nil]
    /// The dial (by the side that dialled it) each side sends on, once chosen.
    var sendsOn: [Int?] = [nil, nil]
    var wantsToSend: [Bool]
    var now = 0.0
    /// Per side: the verdict of its dial says the target answers `bothWays`.
    let answers: [Bool]
    let timeouts: Bool
    var problems: [String] = []

    init(ranks: (Int, Int), wantsToSend: [Bool], answers: [Bool] = [true, true], timeouts: Bool = false) {
        choices = [LinkChoice(rank: ranks.0, peer: ranks.1), LinkChoice(rank: ranks.1, peer: ranks.0)]
        self.wantsToSend = wantsToSend
        self.answers = answers
        self.timeouts = timeouts
    }

    enum Event: Equatable {
        case send(Int), up(Int), arrive(Int), offer(Int), answer(Int), timeout(Int)
    }

    var enabled: [Event] {
        var events: [Event] = []
        for side in 0..<2 {
            if wantsToSend[side] { events.append(.send(side)) }
            if let dial = dials[side] {
                if !dial.up { events.append(.up(side)) }
                if !dial.arrived { events.append(.arrive(side)) }
                if dial.saidBothWays && dial.arrived && !dial.offerSeen { events.append(.offer(side)) }
                if dial.answer != nil && !dial.answerSeen { events.append(.answer(side)) }
            }
            if timeouts && choices[side].deadline != nil { events.append(.timeout(side)) }
        }
        return events
    }

    mutating func run(_ event: Event) {
        switch event {
        case .send(let side):
            wantsToSend[side] = false
            if choices[side].wantLink().dial { dials[side] = Dial() }
        case .up(let side):
            dials[side]?.up = true
            let actions = choices[side].dialled(answers: answers[side], now: now)
            if actions.sayBothWays { dials[side]?.saidBothWays = true }
            if let answer = actions.answer { dials[1 - side]?.answer = answer }
            if actions.closeOwnDial { dials[side]?.closed = true }
            use(actions.use, side: side)
        case .arrive(let side):
            dials[side]?.arrived = true
        case .offer(let dialler):
            dials[dialler]?.offerSeen = true
            let side = 1 - dialler
            let actions = choices[side].peerDialOffered()
            if let answer = actions.answer { dials[dialler]?.answer = answer }
            if actions.closeOwnDial { dials[side]?.closed = true }
            use(actions.use, side: side)
        case .answer(let side):
            dials[side]?.answerSeen = true
            use(choices[side].answered(dials[side]?.answer ?? 0, now: now).use, side: side)
        case .timeout(let side):
            now = max(now, choices[side].deadline ?? now)
            use(choices[side].tick(now: now).use, side: side)
        }
    }

    private mutating func use(_ route: LinkChoice.Route?, side: Int) {
        guard let route else { return }
        if sendsOn[side] != nil { problems.append("side \(side) chose a second time") }
        let dial = route == .own ? side : 1 - side
        guard let connection = dials[dial] else {
            problems.append("side \(side) chose the dial of side \(dial), which does not exist")
            return
        }
        if route == .own && !connection.up { problems.append("side \(side) chose its own dial before it was up") }
        sendsOn[side] = dial
    }

    /// Runs random enabled events until none is left.
    mutating func runToTheEnd(seed: UInt64) {
        var generator = SplitMix(seed: seed)  // Deterministic: a failing order can be replayed.
        var steps = 0
        while let event = enabled.randomElement(using: &generator) {
            run(event)
            steps += 1
            if steps > 100 {
                problems.append("no end after 100 events")
                return
            }
        }
        for side in 0..<2 {
            // A side sends on a connection its dialler never gave up.
            if let dial = sendsOn[side], dials[dial]?.closed == true { problems.append("side \(side) sends on dial \(dial), which was given up") }
        }
    }
}

@Suite struct LinkChoiceTests {
    /// Both sending first (a collective), one, or the other: whatever the order of events, both
    /// sides end on the same connection.
    @Test(arguments: [[true, true], [true, false], [false, true]])
    func everyOrderOfEvents_endsOnOneConnection(wantsToSend: [Bool]) {
        for ranks in [(2, 5), (5, 2)] {
            for seed in UInt64(0)..<3000 {
                var simulation = PairSimulation(ranks: ranks, wantsToSend: wantsToSend)
                simulation.runToTheEnd(seed: seed)
                #expect(simulation.problems == [], "ranks \(ranks), seed \(seed)")
                #expect(simulation.sendsOn[0] != nil && simulation.sendsOn[0] == simulation.sendsOn[1], "ranks \(ranks), seed \(seed)")
                // The higher rank never ends on its own dial when the lower dialled too.
                if simulation.dials[0] != nil && simulation.dials[1] != nil {
                    let lower = ranks.0 < ranks.1 ? 0 : 1
                    #expect(simulation.sendsOn[0] == lower, "ranks \(ranks), seed \(seed)")
                }
            }
        }
    }

    /// One rank's dial got the verdict 1 (its target had not said hello yet), the other's 2:
    /// whatever the order, no wait runs into its time limit (an answer says when no dial is
    /// coming), and each side still chooses once.
    @Test(arguments: [[false, true], [true, false]])
    func aDialThatSaidNothing_neverLeavesTheOtherWaiting(answers: [Bool]) {
        for ranks in [(2, 5), (5, 2)] {
            for seed in UInt64(0)..<3000 {
                var simulation = PairSimulation(ranks: ranks, wantsToSend: [true, true], answers: answers)
                simulation.runToTheEnd(seed: seed)
                #expect(simulation.problems == [], "ranks \(ranks), seed \(seed)")
                #expect(simulation.sendsOn[0] != nil && simulation.sendsOn[1] != nil, "ranks \(ranks), seed \(seed)")
            }
        }
    }

    /// With answers late past their time limit, the sides may keep a connection each, but each
    /// still chooses once, a dial that is up and never given up.
    @Test func lateAnswers_neverLoseTheWayOrChooseTwice() {
        for seed in UInt64(0)..<3000 {
            var simulation = PairSimulation(ranks: (1, 3), wantsToSend: [true, true], timeouts: true)
            simulation.runToTheEnd(seed: seed)
            #expect(simulation.problems == [], "seed \(seed)")
            #expect(simulation.sendsOn[0] != nil && simulation.sendsOn[1] != nil, "seed \(seed)")
        }
    }

    /// A target that does not answer (a Python rank): each side sends on its own dial at once,
    /// as connections always were.
    @Test func aTargetThatDoesNotAnswer_getsOneWayConnections() {
        var choice = LinkChoice(rank: 4, peer: 1)
        let step1 = choice.wantLink()
        #expect(step1 == LinkChoice.Actions(dial: true))
        let step2 = choice.dialled(answers: false, now: 0)
        #expect(step2 == LinkChoice.Actions(use: .own))
        #expect(choice.state == .ready(.own))
    }

    @Test func theLowerRankWritesAtOnce_theHigherWaitsForTheAnswer() {
        var lower = LinkChoice(rank: 1, peer: 4)
        _ = lower.wantLink()
        let step3 = lower.dialled(answers: true, now: 0)
        #expect(step3 == LinkChoice.Actions(sayBothWays: true, use: .own))

        var higher = LinkChoice(rank: 4, peer: 1)
        _ = higher.wantLink()
        let step4 = higher.dialled(answers: true, now: 100)
        #expect(step4 == LinkChoice.Actions(sayBothWays: true))
        #expect(higher.deadline == 100 + LinkChoice.answerTimeout)
        let step5 = higher.tick(now: 105)
        #expect(step5 == LinkChoice.Actions())
        let step6 = higher.answered(0, now: 105)
        #expect(step6 == LinkChoice.Actions())
        #expect(higher.deadline == 105 + LinkChoice.answerTimeout)
        // An answer of 2 (no dial coming) would have settled it on its own dial at once.
        var told = LinkChoice(rank: 4, peer: 1)
        _ = told.wantLink()
        _ = told.dialled(answers: true, now: 0)
        let noDial = told.answered(LinkChoice.noDialComing, now: 1)
        #expect(noDial == LinkChoice.Actions(use: .own))
        // The lower rank's dial comes: it is taken, and this rank's own given up.
        let step7 = higher.peerDialOffered()
        #expect(step7 == LinkChoice.Actions(answer: 1, closeOwnDial: true, use: .peers))
        // Settled: a later offer is declined, a late answer or tick changes nothing.
        let step8 = higher.peerDialOffered()
        #expect(step8 == LinkChoice.Actions(answer: LinkChoice.noDialComing))
        let step9 = higher.answered(1, now: 200)
        #expect(step9 == LinkChoice.Actions())
        let step10 = higher.tick(now: 1000)
        #expect(step10 == LinkChoice.Actions())
        #expect(higher.state == .ready(.peers))
    }

    @Test func anAnswerThatNeverComes_settlesForTheOwnDialAtTheDeadline() {
        var higher = LinkChoice(rank: 4, peer: 1)
        _ = higher.wantLink()
        _ = higher.dialled(answers: true, now: 0)
        let step11 = higher.tick(now: LinkChoice.answerTimeout)
        #expect(step11 == LinkChoice.Actions(use: .own))
        let step12 = higher.peerDialOffered()
        #expect(step12 == LinkChoice.Actions(answer: LinkChoice.noDialComing))
    }

    @Test func aFailedDial_failsOnlyWhileItWasTheWay_andAnswersAnOfferItOwes() {
        var choice = LinkChoice(rank: 4, peer: 1)
        _ = choice.wantLink()
        let failed = choice.dialFailed()
        #expect(failed == LinkChoice.Actions())
        #expect(choice.state == .failed)
        var taken = LinkChoice(rank: 4, peer: 1)
        _ = taken.wantLink()
        _ = taken.peerDialOffered()
        let ignored = taken.dialFailed()
        #expect(ignored == LinkChoice.Actions())
        #expect(taken.state == .ready(.peers))
        // The lower rank owes the answer until its own dial is up, or failed.
        var lower = LinkChoice(rank: 1, peer: 4)
        _ = lower.wantLink()
        let offered = lower.peerDialOffered()
        #expect(offered == LinkChoice.Actions())
        let owed = lower.dialFailed()
        #expect(owed == LinkChoice.Actions(answer: LinkChoice.noDialComing))
    }

    @Test func theLowerRankAnswersAnOfferOnceItKnowsWhetherItsOwnDialSaysBothWays() {
        for (answers, expected) in [(true, 0), (false, LinkChoice.noDialComing)] {
            var lower = LinkChoice(rank: 1, peer: 4)
            _ = lower.wantLink()
            let offered = lower.peerDialOffered()
            #expect(offered == LinkChoice.Actions())
            let up = lower.dialled(answers: answers, now: 0)
            #expect(up == LinkChoice.Actions(sayBothWays: answers, answer: expected, use: .own))
        }
    }
}
