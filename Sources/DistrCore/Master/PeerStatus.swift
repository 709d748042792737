/// What `distr-master status` found out about one peer.
package struct PeerStatus: Sendable, Equatable {
    package enum Outcome: Sendable, Equatable {
        /// Authenticated and reported; `clockOffset` is the worker's clock minus the master's, s.
        case usable(StatusReport, clockOffset: Double)
        case failed(ConnectFailure)
    }

    /// The peer as written by the user.
    package var label: String
    package var outcome: Outcome

    package init(label: String, outcome: Outcome) {
        self.label = label
        self.outcome = outcome
    }

    package var isUsable: Bool {
        if case .usable = outcome { true } else { false }
    }
}
