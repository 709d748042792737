/// Which TCP connection a rank sends to one rank of another worker on (docs/messages.md §2,
/// "One connection both ways"): pure, no sockets, one value per pair, driven by what happens.
///
/// Both ranks of a pair may dial at the same moment (every collective begins that way). With
/// a connection per direction, every message is answered by a bare TCP acknowledgement, which
/// costs the receiver a packet and the sender its processing on every round trip; one
/// connection carries the acknowledgements on the answers. So the pair settles on one:
///
/// - A rank that dials says `bothWays` first (when the target's worker said, in its verdict,
///   that the target answers it) and reads its own connection from then on.
/// - The rank that gets such a connection takes it (answers 1 and sends on it) unless it dialled
///   itself; the **lower** rank keeps its own dial (answers 0: "mine, which said `bothWays`, is
///   coming"), the higher gives its own up for the lower's. A rank that will never send on a
///   connection the dialler could take (it settled on one that said nothing, or failed) answers
///   2, and the dialler uses its own.
/// - The lower rank writes on its own dial at once; the higher writes on its own only after the
///   answer said 1 or 2 (it may still have to give it up), or after `answerTimeout` (a target
///   that never answers).
///
/// Whatever the peer does, a rank's route never changes once it sent on it, and every
/// connection from the peer is read to its end: a wrong or late answer costs a second
/// connection, never order or a message.
struct LinkChoice: Equatable {
    /// How long the higher rank waits for an answer, and then for the lower rank's dial.
    static let answerTimeout = 10.0

    enum Route: Equatable {
        /// The connection this rank dialled.
        case own
        /// The connection the peer dialled (`peerDialOffered`).
        case peers
    }

    enum State: Equatable {
        case idle
        /// This rank's dial is under way.
        case dialling
        /// The higher rank's dial is up and says `bothWays`; no message written on it yet.
        case awaitingAnswer(deadline: Double)
        /// The lower rank declined: its own dial is coming.
        case awaitingPeersDial(deadline: Double)
        /// Sends go this way, for good.
        case ready(Route)
        case failed
    }

    /// What the caller does after an event.
    struct Actions: Equatable {
        /// Start dialling the peer.
        var dial = false
        /// Write `bothWays` first on the dial that just came up.
        var sayBothWays = false
        /// The answer to write on the peer's dial (1: taken, 0: declined, this rank's own dial
        /// is coming; 2: declined, none is coming); nil: none.
        var answer: Int?
        /// This rank's own dial is not used: close it (when it said `bothWays`, shut its sending
        /// side only, and read it to its end).
        var closeOwnDial = false
        /// Sends may go now, this way.
        var use: Route?
    }

    let rank: Int
    let peer: Int
    private(set) var state = State.idle
    /// This rank's own dial said `bothWays` (the peer may take it, or get it as the lower rank's).
    private(set) var saidBothWays = false
    /// The peer's offer came while this lower rank's own dial was under way: it is answered
    /// when the dial is up (0 when it says `bothWays`, else 2) or has failed (2).
    private(set) var answerOwed = false

    init(rank: Int, peer: Int) {
        self.rank = rank
        self.peer = peer
    }

    private var isLower: Bool { rank < peer }

    /// A send needs the link.
    mutating func wantLink() -> Actions {
        guard state == .idle else { return Actions() }
        state = .dialling
        return Actions(dial: true)
    }

    /// This rank's dial came up; `answers`: the worker said the peer answers `bothWays`.
    mutating func dialled(answers: Bool, now: Double) -> Actions {
        switch state {
        case .dialling:
            let owed = answerOwed ? (answers ? 0 : Self.noDialComing) : nil
            answerOwed = false
            guard answers else { return Actions(answer: owed, use: decide(.own).use) }
            saidBothWays = true
            if isLower { return Actions(sayBothWays: true, answer: owed, use: decide(.own).use) }
            state = .awaitingAnswer(deadline: now + Self.answerTimeout)
            return Actions(sayBothWays: true)
        default:
            // The peer's dial was taken meanwhile: this one carries nothing.
            return Actions(closeOwnDial: true)
        }
    }

    /// This rank's dial failed: `state` is `.failed` when it was the way (the answer owed, if
    /// any, is in the actions).
    mutating func dialFailed() -> Actions {
        guard state == .dialling else { return Actions() }
        state = .failed
        defer { answerOwed = false }
        return Actions(answer: answerOwed ? Self.noDialComing : nil)
    }

    /// The peer dialled this rank and said `bothWays`.
    mutating func peerDialOffered() -> Actions {
        switch state {
        case .idle:
            return Actions(answer: 1, use: decide(.peers).use)
        case .dialling where !isLower:
            // This rank's dial is given up when it comes up (`dialled`).
            return Actions(answer: 1, use: decide(.peers).use)
        case .awaitingAnswer, .awaitingPeersDial:
            return Actions(answer: 1, closeOwnDial: true, use: decide(.peers).use)
        case .dialling:
            // The lower rank's dial is under way: whether it says `bothWays` is known when it is up.
            answerOwed = true
            return Actions()
        case .ready(.own) where isLower && saidBothWays:
            return Actions(answer: 0)
        case .ready, .failed:
            return Actions(answer: Self.noDialComing)
        }
    }

    /// The answer meaning "declined, and no dial of mine is coming".
    static let noDialComing = 2

    /// The answer a rank gives an offer once its choice is settled and gone (`Node` keeps only
    /// the link then): 0 when it is the lower rank and sends on its own dial that said
    /// `bothWays` (the dialler gets that dial), else `noDialComing`.
    static func settledAnswer(rank: Int, peer: Int, sendsOnOwnDialThatSaidBothWays: Bool) -> Int {
        rank < peer && sendsOnOwnDialThatSaidBothWays ? 0 : noDialComing
    }

    /// The peer answered this rank's `bothWays` (`answer`: 1, it sends on this rank's dial; 0,
    /// its own dial is coming; 2, no dial of its is coming).
    mutating func answered(_ answer: Int, now: Double) -> Actions {
        guard case .awaitingAnswer = state else { return Actions() }
        if answer != 0 { return decide(.own) }
        state = .awaitingPeersDial(deadline: now + Self.answerTimeout)
        return Actions()
    }

    /// The clock moved on: a wait that outlived its deadline settles for this rank's own dial.
    mutating func tick(now: Double) -> Actions {
        switch state {
        case .awaitingAnswer(let deadline), .awaitingPeersDial(let deadline):
            return now >= deadline ? decide(.own) : Actions()
        default:
            return Actions()
        }
    }

    /// The deadline the caller must call `tick` by, while there is one.
    var deadline: Double? {
        switch state {
        case .awaitingAnswer(let deadline), .awaitingPeersDial(let deadline): deadline
        default: nil
        }
    }

    private mutating func decide(_ route: Route) -> Actions {
        state = .ready(route)
        return Actions(use: route)
    }
}
