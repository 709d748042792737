/// Finds and ends a job's processes wherever they went: into their own session (`setsid`, any
/// number of times), out of their environment (`env -i`), or out from under their parent.
///
/// A process belongs to this worker's part of a job when any of these holds: its environment
/// names the job's directory on this worker (`DISTR_JOB_DIR`; not `DISTR_JOB_ID`, which the
/// job's ranks on other workers of the same host share), its working directory is in that
/// directory, it is in one of the ranks' process groups, or the caller knows more
/// (`alsoBelongs`: the worker's own children when no other job runs, since the worker starts
/// nothing else).
enum Reclaimer {
    static func belongs(_ pid: Int32, to record: JobRecord) -> Bool {
        if ProcessTable.environment(of: pid, contains: "DISTR_JOB_DIR=\(record.directory)") { return true }
        // Paths compare as bytes, the way the kernel sees them.
        if let cwd = ProcessTable.workingDirectory(of: pid),
            cwd.utf8.elementsEqual(record.directory.utf8) || cwd.utf8.starts(with: (record.directory + "/").utf8)
        {
            return true
        }
        if let info = ProcessTable.info(pid), record.processGroups.contains(info.processGroup) { return true }
        return false
    }

    /// Kills the job's processes among `candidates()` until a pass finds none or the deadline
    /// passes. Killing one can reparent its children, so each pass looks again.
    /// - Returns: how many were killed.
    @discardableResult
    static func killAll(
        of record: JobRecord, among candidates: () -> [Int32], alsoBelongs: (Int32) -> Bool = { _ in false },
        until deadline: Deadline = .after(5)
    ) -> Int {
        var killed = Set<Int32>()
        while !deadline.hasPassed {
            let found = candidates().filter { !killed.contains($0) && (alsoBelongs($0) || belongs($0, to: record)) }
            if found.isEmpty { break }
            for pid in found {
                ProcessTable.kill(pid)
                killed.insert(pid)
            }
        }
        return killed.count
    }

    /// Ends what workers that are no longer running left behind: their jobs' processes,
    /// directories and records. A record of a live worker (same pid, same start time) is left
    /// alone: several workers may share a work directory. `deadWorker` is known to be gone even
    /// if /proc does not say so yet (the sentinel learns of its worker's death when the kernel
    /// closes the worker's descriptors, before the worker is a zombie).
    /// - Returns: one line per reclaimed job, for the log.
    static func reclaimAbandoned(_ records: JobRecords, deadWorker: Int32? = nil) -> [String] {
        var lines: [String] = []
        for (file, record) in records.all() {
            guard let record else {
                FileIO.unlink(file)
                lines.append("removed an unreadable job record \(file)")
                continue
            }
            if record.workerPID != deadWorker, let live = ProcessTable.info(record.workerPID), live.startTime == record.workerStart,
                !live.isZombie
            {
                continue
            }
            let emptied = record.controlGroup.map { ControlGroup(path: $0).killAndRemove() } ?? true
            let killed = killAll(of: record, among: ProcessTable.all)
            let report = FileIO.removeTree(record.directory)
            records.remove(record.jobID)
            lines.append(
                "reclaimed job \(record.jobID) left by worker \(record.workerPID): \(killed) process(es) ended"
                    + (record.controlGroup == nil ? "" : emptied ? ", its cgroup emptied" : ", its cgroup NOT emptied")
                    + ", \(record.directory) " + (report.isComplete ? "removed" : "not fully removed: \(report)"))
        }
        return lines
    }
}
