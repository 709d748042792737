@preconcurrency import Glibc
import Dispatch
import Synchronization

/// What the master knows about a running job: every rank's fate and every worker's state.
/// Fed by one reader thread per worker; read by the launcher to decide the exit status.
final class JobMonitor: Sendable {
    struct RankRecord {
        var status: RankStatus?
        var endedByDistr = false
        var stderrTail: [[UInt8]] = []
        var partialStderr: [UInt8] = []
    }

    struct State {
        var ranks: [Int: RankRecord] = [:]
        var finishedWorkers = Set<Int>()
        var workerErrors: [Int: String] = [:]
        var keptDirectories: [Int: String] = [:]
        var firstFailure: Int?
        var cancelReason: String?
    }

    static let tailLines = 5
    let workerCount: Int
    let failFast: Bool
    let printer: OutputPrinter
    private let state = Mutex(State())
    private let allFinished = DispatchSemaphore(value: 0)
    /// Sends a cancel to every worker still running; set by the launcher.
    private let cancelAll: @Sendable (String) -> Void
    private let relayExit: @Sendable (_ fromWorker: Int, _ rank: Int, _ code: Int32) -> Void

    init(
        workerCount: Int, failFast: Bool, printer: OutputPrinter, cancelAll: @escaping @Sendable (String) -> Void,
        relayExit: @escaping @Sendable (Int, Int, Int32) -> Void
    ) {
        self.workerCount = workerCount
        self.failFast = failFast
        self.printer = printer
        self.cancelAll = cancelAll
        self.relayExit = relayExit
    }

    var snapshot: State { state.withLock { $0 } }

    func output(rank: Int, stream: UInt8, bytes: [UInt8]) {
        printer.output(rank: rank, stream: stream, bytes: bytes)
        guard stream == 2 else { return }
        state.withLock { s in
            var record = s.ranks[rank] ?? RankRecord()
            let text = record.partialStderr + bytes
            // Only the last few lines matter: split once, keep the tail.
            let lines = text.split(separator: 10, omittingEmptySubsequences: false)
            let complete = lines.dropLast()
            record.stderrTail += complete.suffix(Self.tailLines).map { Array($0) }
            if record.stderrTail.count > Self.tailLines { record.stderrTail.removeFirst(record.stderrTail.count - Self.tailLines) }
            let rest = lines.last.map { Array($0) } ?? []
            record.partialStderr = rest.count > 4096 ? [] : rest
            s.ranks[rank] = record
        }
    }

    func rankExited(worker: Int, rank: Int, status: RankStatus, endedByDistr: Bool) {
        let failedFirst = state.withLock { s -> Bool in
            var record = s.ranks[rank] ?? RankRecord()
            record.status = status
            record.endedByDistr = endedByDistr
            if !record.partialStderr.isEmpty { record.stderrTail.append(record.partialStderr) }
            s.ranks[rank] = record
            if status.code != 0 && !endedByDistr && s.firstFailure == nil {
                s.firstFailure = rank
                return true
            }
            return false
        }
        relayExit(worker, rank, status.code)
        if failedFirst && failFast { cancel(reason: "rank \(rank) failed (\(status))") }
    }

    func cancel(reason: String) {
        let first = state.withLock { s -> Bool in
            if s.cancelReason != nil { return false }
            s.cancelReason = reason
            return true
        }
        if first { cancelAll(reason) }
    }

    func keptDirectory(worker: Int, path: String) {
        state.withLock { $0.keptDirectories[worker] = path }
    }

    /// A worker is done: its job ended (error nil) or it failed/was lost (error set).
    func workerFinished(_ worker: Int, error: String?) {
        let done = state.withLock { s -> Bool in
            guard s.finishedWorkers.insert(worker).inserted else { return false }
            if let error { s.workerErrors[worker] = error }
            return s.finishedWorkers.count == workerCount
        }
        if error != nil && failFast { cancel(reason: "a node failed") }
        if done { allFinished.signal() }
    }

    /// Waits for every worker, up to `timeout` seconds (nil: forever). Returns false on timeout.
    func waitAll(timeout: Double?) -> Bool {
        guard let timeout else {
            allFinished.wait()
            allFinished.signal()
            return true
        }
        let done = allFinished.wait(timeout: .now() + timeout) == .success
        if done { allFinished.signal() }
        return done
    }
}
