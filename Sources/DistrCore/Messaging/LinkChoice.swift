/// Which TCP connection a rank sends to one rank of another worker on (docs/messages.md §2,
/// "One connection both ways"): pure, no sockets, one value per pair, driven by what happens.
///
/// Both ranks of a pair may dial at the same moment (every collective begins that way). With
/// a connection per direction, every message is answered by a bare TCP acknowledgement, which
/// costs the receiver a packet and the sender its processing on every round trip; one
/// connection carries the acknowledgements on the answers. So the pair settles on one:
///
/// - A rank that dials says `bothWays` first (when its worker's verdict said the target answers
///   it) and reads its own connection from then on.
/// - The rank that gets such a connection takes it (answers 1 and sends on it) unless it dialled
///   itself; the **lower** rank keeps its own dial (answers 0), the higher gives its own up for
///   the lower's.
/// - The lower rank writes on its own dial at once; the higher writes on its own only after the
///   answer said 1 (it may still have to give it up), or after `answerTimeout` (a target that
///   never answers).
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
        /// The higher rank's dial is up and said `bothWays`; nothing written on it yet.
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
        /// The answer to write on the peer's dial (1: taken, 0: declined); nil: none.
        var answer: Int?
        /// Shut the sending side of this rank's own dial: it is not used (the connection stays
        /// read to its end).
        var closeOwnDial = false
        /// Sends may go now, this way.
        var use: Route?
    }

    let rank: Int
    let peer: Int
    private(set) var state = State.idle

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
            guard answers else { return decide(.own) }
            if isLower { return Actions(sayBothWays: true, use: decide(.own).use) }
            state = .awaitingAnswer(deadline: now + Self.answerTimeout)
            return Actions(sayBothWays: true)
        default:
            // The peer's dial was taken meanwhile: this one carries nothing.
            return Actions(closeOwnDial: true)
        }
    }

    /// This rank's dial failed.
    mutating func dialFailed() -> Bool {
        guard state == .dialling else { return false }
        state = .failed
        return true
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
        case .dialling, .ready, .failed:
            return Actions(answer: 0)
        }
    }

    /// The peer answered this rank's `bothWays` (`taken`: it sends on this rank's dial).
    mutating func answered(taken: Bool, now: Double) -> Actions {
        guard case .awaitingAnswer = state else { return Actions() }
        if taken { return decide(.own) }
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
