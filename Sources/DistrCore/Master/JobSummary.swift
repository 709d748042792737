/// The summary `distr-master` prints on stderr after a job, and its exit status. Pure: built
/// from the job policy's final state.
///
/// Order of precedence for the status: interrupted (130), time limit (124), a node lost or
/// refusing the job (69), then the highest status of the ranks that failed on their own. Ranks
/// that distr ended (fail-fast, time limit, Ctrl-C) do not count towards it.
package struct JobSummary: Sendable {
    package let lines: [String]
    package let status: Int32

    package init(
        policy: JobPolicy, rankCount: Int, nodes: [(label: String, ranks: [Int])], names: [Int: String], quiet: Bool,
        interrupted: Bool, timeLimit: Double?, elapsed: Double
    ) {
        var failed: [Int] = []
        var ended: [Int] = []
        var ok = 0
        for rank in 0..<rankCount {
            guard let record = policy.ranks[rank], let status = record.status else { continue }
            // Ended by distr on the master's request. A rank its worker ended on its own
            // (worker shutting down) failed like any other.
            if record.endedByDistr && status.code != 0 && policy.cancelReason != nil {
                ended.append(rank)
            } else if status.code != 0 {
                failed.append(rank)
            } else {
                ok += 1
            }
        }
        var lines: [String] = []
        let unknown = rankCount - ok - failed.count - ended.count
        if !quiet || !failed.isEmpty || !policy.workerErrors.isEmpty || interrupted || timeLimit != nil {
            var parts = ["\(ok) ok", "\(failed.count) failed"]
            if !ended.isEmpty { parts.append("\(ended.count) ended by distr") }
            if unknown > 0 { parts.append("\(unknown) not started or unknown") }
            let hundredths = Int((elapsed * 100).rounded())
            let seconds = "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
            lines.append("\(rankCount) rank(s) on \(nodes.count) node(s): \(parts.joined(separator: ", ")) in \(seconds) s")
        }
        for (worker, path) in policy.keptDirectories.sorted(by: { $0.key < $1.key }) {
            lines.append("node \(nodes[worker].label): job directory kept at \(path)")
        }
        // Ranks that could not start say the same thing on every node: once, ranks folded.
        var startFailures: [String: [Int]] = [:]
        for rank in failed {
            guard let record = policy.ranks[rank], let status = record.status else { continue }
            if case .failedToStart = status {
                startFailures[status.description, default: []].append(rank)
                continue
            }
            lines.append("rank \(rank) on \(names[rank] ?? "?"): \(status)")
            let cut = record.stderrLineCount - record.stderrTail.count
            if cut > 0 {
                lines.append("  [\(rank)] ... (\(cut) earlier stderr line\(cut == 1 ? "" : "s") cut; the last \(record.stderrTail.count) follow)")
            }
            for line in record.stderrTail { lines.append("  [\(rank)] " + String(decoding: line, as: UTF8.self)) }
            // The loader exits 127 when a shared library is missing: say which, where, and the fix.
            if status.code == 127,
                let library = record.stderrTail.lazy.compactMap({ MissingLibrary.library(in: String(decoding: $0, as: UTF8.self)) }).first
            {
                lines.append(MissingLibrary.hint(rank: rank, node: names[rank] ?? "?", library: library))
            }
        }
        for (why, ranks) in startFailures.sorted(by: { $0.value[0] < $1.value[0] }) {
            lines.append("\(ranks.count == 1 ? "rank" : "ranks") \(OutputPrinter.fold(ranks)) \(why)")
        }
        if !ended.isEmpty, let reason = policy.cancelReason {
            lines.append("ranks \(OutputPrinter.fold(ended)) were ended by distr: \(reason)")
        }
        for (worker, error) in policy.workerErrors.sorted(by: { $0.key < $1.key }) {
            lines.append("node \(nodes[worker].label): \(error)")
        }
        if interrupted {
            let where_ = nodes.map { "\($0.label) (ranks \(OutputPrinter.fold($0.ranks)))" }
            lines.append("interrupted: the job was ended on \(where_.joined(separator: ", "))")
            status = ExitCode.interrupted
        } else if let timeLimit {
            lines.append("time limit of \(timeLimit) s reached; the job was ended")
            status = ExitCode.timeout
        } else if !policy.workerErrors.isEmpty {
            status = ExitCode.unavailable
        } else {
            status = failed.compactMap { policy.ranks[$0]?.status?.code }.max() ?? ExitCode.ok
        }
        self.lines = lines
    }
}
