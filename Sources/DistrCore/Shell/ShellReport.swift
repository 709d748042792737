/// How the shell shows one command's results: nodes whose output and end are identical are
/// printed once under their folded ids, the others separately. Pure.
///
/// ```
/// ----- [0-1,3] -----
/// Linux
/// ----- [2] exit 1 -----
/// uname: invalid option
/// ```
package enum ShellReport {
    /// The text for `results` (node id and what its rank did), groups in order of their first node.
    package static func render(_ results: [(node: Int, rank: JobCapture.Rank)]) -> [UInt8] {
        var order: [JobCapture.Rank] = []
        var groups: [JobCapture.Rank: [Int]] = [:]
        for (node, rank) in results.sorted(by: { $0.node < $1.node }) {
            if groups[rank] == nil { order.append(rank) }
            groups[rank, default: []].append(node)
        }
        var out: [UInt8] = []
        for rank in order {
            var header = "----- \(OutputPrinter.fold(groups[rank] ?? []))"
            if let error = rank.workerError {
                header += " lost: \(error)"
            } else if let status = rank.status {
                if status != .exited(0) { header += " \(status)" }
            } else {
                header += " no exit status (the command was not started)"
            }
            out += Array((header + " -----\n").utf8)
            out += rank.output
        }
        return out
    }

    /// The status of one command line, as `exec` would give it on those nodes: 130 when it was
    /// interrupted, 69 when a selected node was lost or skipped as unreachable (or did not start
    /// the command), else the highest exit code (128+N for a signal), 0 when every node exited 0.
    package static func status(_ results: [(node: Int, rank: JobCapture.Rank)], skipped: Bool, interrupted: Bool) -> Int32 {
        if interrupted { return ExitCode.interrupted }
        if skipped || results.contains(where: { $0.rank.workerError != nil || $0.rank.status == nil }) { return ExitCode.unavailable }
        return results.compactMap { $0.rank.status?.code }.max() ?? ExitCode.ok
    }
}

extension JobCapture.Rank: Hashable {
    package func hash(into hasher: inout Hasher) {
        hasher.combine(output)
        hasher.combine(status?.description)
        hasher.combine(workerError)
    }

}
