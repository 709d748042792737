/// Why a worker could not be used, in the words `status` and `run` print: a short kind for the
/// table and the JSON, and a message that says what to do.
package struct ConnectFailure: Sendable, Equatable, CustomStringConvertible {
    /// "refused", "timed out", "name not resolved", "unreachable", "wrong secret",
    /// "version mismatch", "not distr", "busy", "handshake failed", "protocol error".
    package var kind: String
    package var message: String
    /// The peer's protocol version, when it refused ours.
    package var peerProtocol: UInt16?

    package init(kind: String, message: String, peerProtocol: UInt16? = nil) {
        self.kind = kind
        self.message = message
        self.peerProtocol = peerProtocol
    }

    package var description: String { message }

    /// Classifies what connecting to `node` (at `address`) threw.
    package static func classify(_ error: any Error, node: String, address: String) -> ConnectFailure {
        switch error {
        case SocketError.resolve(let host, let reason):
            return ConnectFailure(kind: "name not resolved", message: "cannot resolve host '\(host)' (\(reason)); check the name in the peers list")
        case SocketError.connect(_, let cause) where cause.code == .connectionRefused:
            return ConnectFailure(
                kind: "refused", message: "connection refused at \(address): is distr-worker running there, on that port?")
        case SocketError.timedOut(_, let seconds):
            return ConnectFailure(
                kind: "timed out",
                message: "no answer from \(address) within \(seconds) s: the host is down, or a firewall drops the port")
        case SocketError.connect(_, let cause):
            return ConnectFailure(kind: "unreachable", message: "cannot connect to \(address): \(cause.reason)")
        case WireError.versionMismatch(let theirs, let ours):
            return ConnectFailure(kind: "version mismatch", message: versionMismatch(node: node, theirs: theirs, ours: ours), peerProtocol: theirs)
        case WireError.authenticationFailed(let why) where why.contains("cluster secret") || why.contains("rejected this key"):
            return ConnectFailure(
                kind: "wrong secret",
                message: "wrong secret: the worker at \(address) does not hold this master's cluster secret; copy the same secret file to the node")
        case WireError.badMagic:
            return ConnectFailure(kind: "not distr", message: "\(address) does not speak the distr protocol: is this the worker's port?")
        case WireError.busy:
            return ConnectFailure(kind: "busy", message: "\(WireError.busy)")
        case WireError.authenticationFailed(let why):
            return ConnectFailure(kind: "handshake failed", message: "handshake with \(address) failed: \(why)")
        default:
            return ConnectFailure(kind: "unreachable", message: "\(error)")
        }
    }

    /// Which side to upgrade, in the user's words.
    package static func versionMismatch(node: String, theirs: UInt16, ours: UInt16) -> String {
        let upgrade = theirs < ours ? "upgrade distr-worker on \(node)" : "upgrade distr-master on this machine"
        return "node \(node) runs distr protocol \(theirs), this master speaks \(ours): \(upgrade)"
    }
}
