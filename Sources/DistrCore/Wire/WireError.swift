/// Protocol violations and authentication failures on a distr connection.
package enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case badMagic
    case versionMismatch(theirs: UInt16, ours: UInt16)
    case frameTooLarge(size: Int, limit: Int)
    case badMAC
    case truncated
    case unknownMessage(type: UInt8)
    case authenticationFailed(String)
    case refused(String)
    case closed
    /// The worker has too many connections in their handshake; the client may try again.
    case busy
    /// The peer stopped in the middle of a frame or a handshake for longer than allowed.
    case stalled(String)
    /// Nothing at all arrived from the peer for this many seconds (see `Liveness`).
    case silent(seconds: Double)

    package var description: String {
        switch self {
        case .badMagic: "the peer does not speak the distr protocol (bad magic bytes); is this the right port?"
        case .versionMismatch(let theirs, let ours):
            "protocol version mismatch: the peer speaks version \(theirs), this program speaks \(ours); install the same distr release on every node"
        case .frameTooLarge(let size, let limit): "frame of \(size) bytes exceeds the limit of \(limit) bytes"
        case .badMAC: "a frame failed its integrity check (tampered, replayed or reordered); connection dropped"
        case .truncated: "a message ended before all its fields were read"
        case .unknownMessage(let type): "unknown message type \(type)"
        case .authenticationFailed(let why): "authentication failed: \(why)"
        case .refused(let why): "refused: \(why)"
        case .closed: "connection closed by the peer"
        case .busy:
            "the worker is busy: too many connections are in their handshake (from this address, or in all); try again, and look for clients that connect without finishing"
        case .stalled(let what): "the peer stalled: \(what)"
        case .silent(let seconds): "stopped answering: \(Liveness.describeSilence(seconds))"
        }
    }
}
