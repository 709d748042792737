import Synchronization

/// One running rank on a worker: its process group, output pipes, agent channel and exit status.
final class RankProcess: Sendable {
    let rank: Int
    let pid: Int32
    /// The worker's end of the agent channel.
    let agentFD: Int32
    let stdoutFD: Int32
    let stderrFD: Int32
    /// Becomes readable when the reaper has stored the exit status.
    let exitNotifyFD: Int32
    /// Feeds the master's stdin to the rank (`--stdin`); nil: its stdin is `/dev/null`.
    let stdin: StdinFeeder?
    private let exitNotifyWriteFD: Int32
    private let exit = ExitRecord()
    let endedByDistr = Atomic<Bool>(false)
    /// Opens when the rank has said hello on its agent channel.
    let greeted = Latch()
    /// Whether the rank's hello said it can talk over shared-memory rings.
    let speaksSharedMemory = Atomic<Bool>(false)
    /// Said `helloReadingOffers`: ranks connecting to it on this worker may offer it memory.
    let readsOffers = Atomic<Bool>(false)
    /// Said `helloReadingOffers` or `helloAnswering`: it answers `bothWays` on connections from
    /// ranks of other workers (the verdict tells the dialler so).
    let answersBothWays = Atomic<Bool>(false)

    var status: RankStatus? { exit.status.withLock { $0 } }
    var hasExited: Bool { exit.exited.load(ordering: .acquiring) }

    /// Spawns the rank. Descriptors are closed on failure.
    /// - Throws: `SystemError` from pipe creation or `posix_spawn`.
    init(
        rank: Int, arguments: [String], environment: [String], directory: String, controlGroupProcs: Int32?,
        controlGroupDirectory: Int32? = nil, readsStdin: Bool = false
    ) throws(SystemError) {
        self.rank = rank
        let out = try FD.pipe()
        let err = try FD.pipe()
        let notify = try FD.pipe()
        let agent = try AgentChannel.pair()
        var input: (read: Int32, write: Int32)?
        if readsStdin {
            do { input = try FD.pipe() } catch {
                for fd in [out.read, out.write, err.read, err.write, notify.read, notify.write, agent.0, agent.1] { FD.close(fd) }
                throw error
            }
        }
        stdoutFD = out.read
        stderrFD = err.read
        exitNotifyFD = notify.read
        exitNotifyWriteFD = notify.write
        agentFD = agent.0
        let request = SpawnRequest(
            arguments: arguments, environment: environment + ["DISTR_AGENT_FD=3"], directory: directory,
            stdin: input?.read, stdout: out.write, stderr: err.write, inherited: [(agent.1, 3)],
            // The rank dies with the worker, even after kill -9 of the worker. (Also with the
            // thread that spawned it, but threads are pooled and outlive their work: the job's
            // own end is what ends its ranks.)
            parentDeathSignal: .kill, controlGroupProcs: controlGroupProcs, controlGroupDirectory: controlGroupDirectory)
        let record = exit
        let notifyWrite = notify.write
        do {
            pid = try Spawner.spawn(request) { result in
                record.status.withLock { $0 = result }
                record.exited.store(true, ordering: .releasing)
                try? FD.writeAll(notifyWrite, [1])  // Only fails once the job has closed the pipe: no one waits.
            }
        } catch {
            for fd in [out.read, out.write, err.read, err.write, notify.read, notify.write, agent.0, agent.1] { FD.close(fd) }
            if let input { for fd in [input.read, input.write] { FD.close(fd) } }
            throw error
        }
        if let input {
            FD.close(input.read)
            stdin = StdinFeeder(rank: rank, fd: input.write)
        } else {
            stdin = nil
        }
        // The child holds its own copies now.
        FD.close(out.write)
        FD.close(err.write)
        FD.close(agent.1)
        FD.setNonblocking(stdoutFD)
        FD.setNonblocking(stderrFD)
        // A pipe the size of an output batch: a rank that writes fast fills a whole batch
        // before it must wait, and the worker takes it with one read (64 KiB pipes cost a
        // wake-up of each side per 64 KiB). Refused past the user's pipe quota: kept as it is.
        FD.setPipeSize(stdoutFD, bytes: Self.stdoutPipeSize)
    }

    /// The capacity asked for the rank's stdout pipe: one output batch (see `pumpOutput`).
    static let stdoutPipeSize = 256 * 1024

    /// Signals the rank's whole process group.
    func signalGroup(_ signal: Signal) {
        try? signal.send(toGroup: pid)  // ESRCH: every process of the group has gone already.
    }

    func closeDescriptors() {
        stdin?.stop()
        for fd in [stdoutFD, stderrFD, exitNotifyFD, exitNotifyWriteFD, agentFD] { FD.close(fd) }
    }

    /// Forwards the rank's output until it exits, then drains what it wrote before exiting.
    /// Does not wait for end-of-file: a background child that keeps the pipe open cannot hold
    /// the job. Each stream is read until its pipe is empty (or `batch` bytes wait) before its
    /// whole lines go out, so a rank that writes fast is relayed in large batches while a line
    /// written alone still leaves at once. A line is cut at `maxLine` bytes. `send` gets the
    /// stream (1 stdout, 2 stderr), a buffer with `headroom` bytes before the batch and
    /// `tailroom` after it (see `LineBuffer.take`), and the batch's size; the partial last line
    /// goes at exit.
    func pumpOutput(
        batch: Int = 256 * 1024, maxLine: Int = 64 * 1024, headroom: Int = 0, tailroom: Int = 0,
        send: (UInt8, UnsafeMutableRawBufferPointer, Int) -> Void
    ) {
        var buffers = [
            LineBuffer(capacity: batch, maxLine: maxLine, headroom: headroom, tailroom: tailroom),
            LineBuffer(capacity: batch, maxLine: maxLine, headroom: headroom, tailroom: tailroom),
        ]
        var open = [true, true]
        let pipes = [stdoutFD, stderrFD]

        func drain(_ index: Int) {
            let stream = UInt8(index + 1)
            while open[index] {
                if buffers[index].mustTake { buffers[index].take { send(stream, $0, $1) } }
                let result: IOResult
                do {
                    let pipe = pipes[index]
                    var outcome = IOResult.wouldBlock
                    _ = try buffers[index].fill { space throws(SystemError) in
                        outcome = try FD.readNonblocking(pipe, into: space)
                        if case .bytes(let n) = outcome { return n }
                        return 0
                    }
                    result = outcome
                } catch {
                    open[index] = false  // A pipe that cannot be read has nothing more to give.
                    break
                }
                switch result {
                case .bytes: continue
                case .endOfStream: open[index] = false
                case .wouldBlock: break
                }
                break
            }
            buffers[index].take { send(stream, $0, $1) }
        }

        while true {
            let ready: [Bool]
            do {
                ready = try FD.waitReadable([open[0] ? pipes[0] : -1, open[1] ? pipes[1] : -1, exitNotifyFD])
            } catch {
                continue  // EINTR is retried inside; ENOMEM passes: try again.
            }
            if ready[0] { drain(0) }
            if ready[1] { drain(1) }
            if ready[2] {
                drain(0)
                drain(1)
                break
            }
        }
        for index in 0..<2 {
            buffers[index].take(all: true) { send(UInt8(index + 1), $0, $1) }
        }
    }
}

/// Where the reaper leaves a rank's status for its output thread.
private final class ExitRecord: Sendable {
    let status = Mutex<RankStatus?>(nil)
    let exited = Atomic<Bool>(false)
}
