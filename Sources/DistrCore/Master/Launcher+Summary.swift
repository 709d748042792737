import Synchronization

extension Launcher {
    /// Prints the summary on stderr and picks the exit status.
    ///
    /// Order of precedence: interrupted (130), time limit (124), a node lost or refusing the
    /// job (69), then the highest status of the ranks that failed on their own. Ranks that distr
    /// ended because another rank failed do not count towards the status.
    func conclude(_ state: JobMonitor.State, names: [Int: String], timedOut: Bool) -> Int32 {
        let hundredths = Int(((Clock.now - startTime) * 100).rounded())
        let elapsed = "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
        var failed: [Int] = []
        var ended: [Int] = []
        var ok = 0
        for rank in 0..<rankCount {
            guard let record = state.ranks[rank], let status = record.status else { continue }
            // Ended by distr on the master's request (fail-fast, timeout, Ctrl-C). A rank its
            // worker ended on its own (worker shutting down) failed like any other.
            if record.endedByDistr && status.code != 0 && state.cancelReason != nil {
                ended.append(rank)
            } else if status.code != 0 {
                failed.append(rank)
            } else {
                ok += 1
            }
        }
        let unknown = rankCount - ok - failed.count - ended.count
        let wasInterrupted = isInterrupted
        if !options.quiet || !failed.isEmpty || !state.workerErrors.isEmpty || wasInterrupted || timedOut {
            var parts = ["\(ok) ok", "\(failed.count) failed"]
            if !ended.isEmpty { parts.append("\(ended.count) ended by distr") }
            if unknown > 0 { parts.append("\(unknown) unknown") }
            note("\(rankCount) rank(s) on \(links.count) node(s): \(parts.joined(separator: ", ")) in \(elapsed) s")
        }
        for (worker, path) in state.keptDirectories.sorted(by: { $0.key < $1.key }) {
            note("node \(links[worker].peer.label): job directory kept at \(path)")
        }
        for rank in failed {
            guard let record = state.ranks[rank], let status = record.status else { continue }
            note("rank \(rank) on \(names[rank] ?? "?"): \(status)")
            for line in record.stderrTail { note("  [\(rank)] " + String(decoding: line, as: UTF8.self)) }
        }
        if !ended.isEmpty, let reason = state.cancelReason {
            note("ranks \(OutputPrinter.fold(ended)) were ended by distr: \(reason)")
        }
        for (worker, error) in state.workerErrors.sorted(by: { $0.key < $1.key }) {
            note("node \(links[worker].peer.label): \(error)")
        }
        if wasInterrupted {
            let nodes = links.map { "\($0.peer.label) (ranks \(OutputPrinter.fold($0.ranks)))" }
            note("interrupted: the job was ended on \(nodes.joined(separator: ", "))")
            return ExitCode.interrupted
        }
        if timedOut {
            note("time limit of \(options.timeout ?? 0) s reached; the job was ended")
            return ExitCode.timeout
        }
        if !state.workerErrors.isEmpty { return ExitCode.unavailable }
        return failed.compactMap { state.ranks[$0]?.status?.code }.max() ?? ExitCode.ok
    }
}
