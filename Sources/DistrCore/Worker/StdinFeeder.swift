import Dispatch
import Synchronization

/// Writes the master's stdin into one rank's stdin pipe, on a thread of its own, so that a rank
/// that does not read cannot stall the control connection the bytes arrive on.
///
/// Bytes wait here until the pipe takes them, up to `limit` bytes. Past that the rank is not
/// keeping up and the worker cannot push back without stalling the job's control connection, so
/// the rest of its input is dropped: its stdin is closed (it sees end of input) and `onDrop` says
/// so. The master's side is paced by TCP: it sends no faster than the worker reads the connection.
final class StdinFeeder: Sendable {
    /// Bytes that may wait for a rank to read them.
    static let defaultLimit = 32 << 20

    private struct State {
        var queue: [[UInt8]] = []
        var head = 0
        var pending = 0
        var ended = false
        var stopped = false
    }

    let rank: Int
    let limit: Int
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)

    /// Takes ownership of `fd`, the write end of the rank's stdin pipe: it is closed at the end
    /// of input, when the rank stops reading (EPIPE), or when the input is dropped.
    init(rank: Int, fd: Int32, limit: Int = StdinFeeder.defaultLimit) {
        self.rank = rank
        self.limit = limit
        Threads.start(name: "distr-stdin-\(rank)") { [self] in feed(fd) }
    }

    /// Queues `bytes`; empty bytes end the input. Never blocks.
    /// - Returns: false when the bytes were dropped because the rank is `limit` bytes behind
    ///   (once; later input is discarded silently).
    func enqueue(_ bytes: [UInt8]) -> Bool {
        let accepted = state.withLock { state -> Bool in
            if state.stopped || state.ended { return true }
            if bytes.isEmpty {
                state.ended = true
                return true
            }
            if bytes.count > limit - state.pending {
                state.stopped = true
                state.queue = []
                state.head = 0
                state.pending = 0
                return false
            }
            state.queue.append(bytes)
            state.pending += bytes.count
            return true
        }
        wake.signal()
        return accepted
    }

    /// The job is over: stop after the write in progress.
    func stop() {
        state.withLock { $0.stopped = true }
        wake.signal()
    }

    private func feed(_ fd: Int32) {
        defer { FD.close(fd) }
        while true {
            let next = state.withLock { state -> [UInt8]? in
                if state.stopped { return [] }
                guard state.head < state.queue.count else { return state.ended ? [] : nil }
                let chunk = state.queue[state.head]
                state.head += 1
                state.pending -= chunk.count
                // Drop the consumed prefix now and then, so the array does not grow for ever.
                if state.head > 64 && state.head * 2 > state.queue.count {
                    state.queue.removeFirst(state.head)
                    state.head = 0
                }
                return chunk
            }
            guard let chunk = next else {
                wake.wait()
                continue
            }
            if chunk.isEmpty { return }
            // Blocking write on this thread: the rank's reading paces it. EPIPE: the rank
            // closed its stdin or exited, and the rest of the input has no reader.
            do { try FD.writeAll(fd, chunk) } catch {
                stop()
                return
            }
        }
    }
}
