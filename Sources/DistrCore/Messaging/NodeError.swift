/// Errors of the message library, written for the person reading the rank's stderr.
public enum NodeError: Error, Equatable, Sendable, CustomStringConvertible {
    case notLaunchedByDistr(missing: String)
    case badAgentChannel(String)
    case badRank(Int, count: Int)
    case badTag(Int)
    case typeMismatch(expected: String, source: Int, tag: Int, detail: String)
    case peerExited(rank: Int, status: Int32)
    case allPeersExited
    case aborted(String)
    case connectFailed(rank: Int, reason: String)
    case sendFailed(rank: Int, reason: String)
    case left
    case badArgument(String)

    public var description: String {
        switch self {
        case .notLaunchedByDistr(let missing):
            "this program must be launched by distr-master (e.g. 'distr-master run --local 4 PROGRAM'): \(missing) is not set"
        case .badAgentChannel(let why): "the agent channel from distr-worker is unusable: \(why)"
        case .badRank(let rank, let count): "rank \(rank) does not exist: this job has ranks 0...\(count - 1)"
        case .badTag(let tag): "tag \(tag) is not allowed: user tags are 0 or more (negative tags belong to collectives)"
        case .typeMismatch(let expected, let source, let tag, let detail):
            "the message from rank \(source) with tag \(tag) is not a \(expected): \(detail)"
        case .peerExited(let rank, let status):
            "rank \(rank) has exited (status \(status)) and no matching message from it is pending"
        case .allPeersExited: "every other rank has exited and no matching message is pending"
        case .aborted(let reason): "the job is being ended: \(reason)"
        case .connectFailed(let rank, let reason): "cannot connect to rank \(rank): \(reason)"
        case .sendFailed(let rank, let reason): "sending to rank \(rank) failed: \(reason)"
        case .left: "this node has already called leave()"
        case .badArgument(let why): why
        }
    }
}
