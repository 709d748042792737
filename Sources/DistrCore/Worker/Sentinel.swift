/// A small process the worker forks before it starts any thread, that outlives it. The worker
/// holds the write end of a pipe; when the worker dies, however it dies (`kill -9` included),
/// the kernel closes that end, and the sentinel ends whatever the worker's jobs left running
/// (from the job records: escaped processes, background children) and removes their
/// directories, then exits. The ranks themselves die with the worker (`PR_SET_PDEATHSIG`).
///
/// A sentinel killed together with its worker leaves the same work to the next worker that
/// starts on the same work directory (`Reclaimer.reclaimAbandoned` at start-up).
package enum Sentinel {
    /// Forks the sentinel. Call it before any thread exists: the child runs Swift code, which is
    /// only safe after `fork` in a process that has one thread.
    /// - Returns: the sentinel's pid, or nil (logged) when it could not be started.
    package static func start(workDirectory: String, log: (String) -> Void) -> Int32? {
        let lifeline: (read: Int32, write: Int32)
        do { lifeline = try FD.pipe() } catch {
            log("cannot start the sentinel (\(error)); a crash of this worker will leave its jobs' processes running")
            return nil
        }
        let pid: Int32
        // Fork before any thread exists: the child runs Swift code, safe only in a one-thread process.
        do { pid = try CurrentProcess.fork() } catch {
            log("cannot start the sentinel (\(error)); a crash of this worker will leave its jobs' processes running")
            FD.close(lifeline.read)
            FD.close(lifeline.write)
            return nil
        }
        if pid == 0 {
            FD.close(lifeline.write)
            watch(lifeline.read, workDirectory: workDirectory, worker: CurrentProcess.parentID)
        }
        // The write end stays open, close-on-exec (ranks must not hold it), until this process ends.
        FD.close(lifeline.read)
        return pid
    }

    private static func watch(_ lifeline: Int32, workDirectory: String, worker: Int32) -> Never {
        // A hangup that ends the worker (its terminal closed: the signal goes to the whole
        // process group) must leave the sentinel to clean up after it.
        Signals.ignoreHangup()
        // Not a holder of the worker's stdout: whoever reads it sees its end when the worker exits.
        try? CurrentProcess.detachStandardInputAndOutput()  // Without /dev/null the streams are merely held longer.
        var byte: [UInt8] = [0]
        _ = try? FD.read(lifeline, into: &byte)  // End of stream (the worker is gone) or an error: the watch is over.
        for line in reclaim(workDirectory: workDirectory, deadWorker: worker) { CurrentProcess.printError("distr-worker sentinel: \(line)\n") }
        CurrentProcess.exit(0)
    }

    /// Ends what the dead worker's jobs left and removes their directories, from the job
    /// records. A work directory without records (removed after its worker stopped, as
    /// `--local` does) is left as it is: it is not made again.
    /// - Returns: what was done, for the log.
    static func reclaim(workDirectory: String, deadWorker: Int32) -> [String] {
        guard let records = JobRecords.existing(workDirectory: workDirectory) else { return [] }
        let lines = Reclaimer.reclaimAbandoned(records, deadWorker: deadWorker)
        // The worker's kept empty cgroups, which no record names (the sentinel was forked from
        // the worker: it sits in the same cgroup, the place the worker made them under).
        if case .success(let place) = ControlGroup.placeForJobs() {
            SpareControlGroups.removeLeftovers(under: place, deadWorker: deadWorker)
        }
        return lines
    }
}
