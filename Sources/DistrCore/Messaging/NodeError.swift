/// Errors of the message library, written for the person reading the rank's stderr.
public enum NodeError: Error, Equatable, Sendable, CustomStringConvertible {
    case notLaunchedByDistr(missing: String)
    case badAgentChannel(String)
    case badRank(Int, count: Int)
    case badTag(Int)
    case typeMismatch(expected: String, source: Int, tag: Int, detail: String)
    /// A Python rank sent a pickled Python object (encoding 3), which only Python ranks decode.
    case pickledValue(source: Int, tag: Int)
    case peerExited(rank: Int, status: Int32)
    case allPeersExited
    case aborted(String)
    case connectFailed(rank: Int, reason: String)
    case sendFailed(rank: Int, reason: String)
    case left
    case badArgument(String)
    /// A peer announced a payload over this rank's limit (`DISTR_MAX_MESSAGE_BYTES`).
    case messageTooLarge(rank: Int, size: UInt64, limit: Int)
    /// A peer sent a frame header the format does not define.
    case badFrame(rank: Int, detail: String)
    /// The shared-memory ring with a rank on the same worker holds an impossible state (that rank
    /// wrote over what it must not), or its segment could not be used.
    case corruptRing(rank: Int, detail: String)
    /// A binary Codable message nests deeper than the decoder accepts.
    case nestedTooDeep(source: Int, tag: Int, limit: Int)
    /// A peer's part of a collective does not fit the shape the algorithm implies.
    case badCollective(rank: Int, detail: String)

    public var description: String {
        switch self {
        case .notLaunchedByDistr(let missing):
            "this program was not started by distr-master (\(missing) is not set); run it with: distr-master run --local 4 <program>"
        case .badAgentChannel(let why): "the agent channel from distr-worker is unusable: \(why)"
        case .badRank(let rank, let count): "rank \(rank) does not exist: this job has ranks 0...\(count - 1)"
        case .badTag(let tag): "tag \(tag) is not allowed: user tags are 0 or more (negative tags belong to collectives)"
        case .typeMismatch(let expected, let source, let tag, let detail):
            "the message from rank \(source) with tag \(tag) is not a \(expected): \(detail)"
        case .pickledValue(let source, let tag):
            "rank \(source) sent a pickled Python object (tag \(tag)); a Swift rank receives str, int, float, bool, bytes, numeric arrays and lists/dicts of them (send one of those from Python)"
        case .peerExited(let rank, let status):
            "rank \(rank) has exited (status \(status)) and no matching message from it is pending"
        case .allPeersExited: "every other rank has exited and no matching message is pending"
        case .aborted(let reason): "the job is being ended: \(reason)"
        case .connectFailed(let rank, let reason): "cannot connect to rank \(rank): \(reason)"
        case .sendFailed(let rank, let reason): "sending to rank \(rank) failed: \(reason)"
        case .left: "this node has already called leave()"
        case .badArgument(let why): why
        case .messageTooLarge(let rank, let size, let limit):
            "rank \(rank) sent a message of \(size) bytes, over the limit of \(limit) (DISTR_MAX_MESSAGE_BYTES); the connection from rank \(rank) was closed"
        case .badFrame(let rank, let detail):
            "rank \(rank) sent a malformed message header (\(detail)); the connection from rank \(rank) was closed"
        case .corruptRing(let rank, let detail):
            "the shared-memory ring with rank \(rank) is unusable (\(detail)); the connection with rank \(rank) was closed"
        case .nestedTooDeep(let source, let tag, let limit):
            "the message from rank \(source) with tag \(tag) nests deeper than \(limit) levels"
        case .badCollective(let rank, let detail):
            "rank \(rank) \(detail) (do all ranks call the same collectives in the same order?)"
        }
    }
}
