import Synchronization

/// What a job's ranks wrote and how they ended, held for a caller that shows it itself (the
/// shell) instead of the `OutputPrinter` and the summary lines.
package final class JobCapture: Sendable {
    /// One rank's output (stdout and stderr in order of arrival) and its end.
    package struct Rank: Sendable, Equatable {
        package var output: [UInt8] = []
        package var status: RankStatus?
        /// Why its worker could not finish the job (lost, refused), if it could not.
        package var workerError: String?
    }

    private let state = Mutex<[Int: Rank]>([:])

    package init() {}

    func append(rank: Int, bytes: [UInt8]) {
        state.withLock { ranks in
            var chunk = bytes
            if chunk.last != 10 { chunk.append(10) }
            ranks[rank, default: Rank()].output += chunk
        }
    }

    func finish(policy: JobPolicy, ranksOfWorker: [Int: [Int]]) {
        state.withLock { ranks in
            for (rank, record) in policy.ranks { ranks[rank, default: Rank()].status = record.status }
            for (worker, error) in policy.workerErrors {
                for rank in ranksOfWorker[worker] ?? [] { ranks[rank, default: Rank()].workerError = error }
            }
        }
    }

    /// Each rank's record, by rank.
    package var ranks: [Int: Rank] { state.withLock { $0 } }
}
