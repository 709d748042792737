import Synchronization

/// The worker's job cgroups: made under its own cgroup, and when a job has ended and its cgroup
/// is empty, kept for the next job instead of removed and made anew.
///
/// Why: `mkdir` and `rmdir` of a cgroup cost the kernel about 50 µs per job on the 2-core test
/// machine (a C loop of 2,000 pairs: 49-61 µs), a twelfth of all the CPU a worker spends on an
/// `exec true`; a look at `cgroup.events` (is it empty?) costs about 10. Cgroup v2 has no rename
/// (`EPERM`), so a cgroup is named by its worker and a number, `distr-job-PID-START-N`, not by
/// the job it holds: the job's record names it (`JobRecords`), which is what a worker or
/// sentinel cleaning up after a crash goes by. Only a cgroup that is empty when its job has
/// ended is kept, and no process can enter an empty cgroup but by being moved there by root:
/// the next job starts in an empty one.
///
/// One that still holds processes is killed (`cgroup.kill`) and removed, never kept: on Linux
/// 6.18 (the test machine's) every process later started into a cgroup that was killed once, by
/// `clone3` with `CLONE_INTO_CGROUP` as the spawner does, is killed at birth (SIGKILL), while
/// one that writes its pid into `cgroup.procs` is not (a C program shows both; the spare kept
/// after a kill failed every later job on that worker with SIGKILL).
///
/// The names carry the worker's pid and start time: a worker starting under the same parent
/// cgroup, or this worker's sentinel, removes the empty ones a worker that is gone left there.
/// One that still holds processes belonged to a job of a worker that crashed: its record names
/// it, and whoever reclaims that job (a worker on the same work directory, or the sentinel)
/// ends them; workers on other work directories leave it alone.
final class SpareControlGroups: Sendable {
    /// Where the cgroups are made (`ControlGroup.placeForJobs`).
    let place: String
    private let owner: String
    private let state = Mutex<(spares: [OpenControlGroup], next: Int)>(([], 0))
    /// Empty cgroups kept at most: enough for the jobs one worker runs at once.
    static let limit = 8
    static let prefix = "distr-job-"

    /// `owner`: the pid and start time in the names (this process's; tests give another).
    init(place: String, owner: (pid: Int32, start: UInt64) = (CurrentProcess.id, ProcessTable.ownStartTime)) {
        self.place = place
        self.owner = "\(owner.pid)-\(owner.start)"
    }

    /// A cgroup for a job, its descriptors open: a kept one, or a new one (under a name no one
    /// has taken).
    /// - Throws: `SystemError` when a new one cannot be made or opened.
    func take() throws(SystemError) -> OpenControlGroup {
        if let spare = state.withLock({ $0.spares.popLast() }) { return spare }
        // Names are taken only by this worker's earlier cgroups, or by hand: a few tries at most.
        for _ in 0..<1000 {
            let number = state.withLock { state in
                defer { state.next += 1 }
                return state.next
            }
            guard let group = try ControlGroup.create(under: place, name: "\(Self.prefix)\(owner)-\(number)") else { continue }
            do { return try OpenControlGroup(group) } catch {
                group.killAndRemove()
                throw error
            }
        }
        throw SystemError("mkdir \(place)/\(Self.prefix)\(owner)-N", code: .exists)
    }

    /// Keeps a finished job's cgroup for the next job when it is empty (and fewer than `limit`
    /// are kept); otherwise ends what the job left in it and removes it (`killAndRemove`).
    /// - Returns: false when it held processes that could not be ended, or it could not be removed.
    func release(_ open: OpenControlGroup) -> Bool {
        let kept =
            open.group.isEmpty == true
            && state.withLock { state -> Bool in
                guard state.spares.count < Self.limit else { return false }
                state.spares.append(open)
                return true
            }
        if kept { return true }
        open.closeDescriptors()
        return open.group.killAndRemove()
    }

    /// The cgroups kept now (for tests).
    var kept: [ControlGroup] { state.withLock { $0.spares.map(\.group) } }

    /// Removes every kept cgroup (at shutdown).
    func removeAll() {
        let spares = state.withLock { state in
            defer { state.spares = [] }
            return state.spares
        }
        for open in spares {
            open.closeDescriptors()
            open.group.killAndRemove()
        }
    }

    /// Removes the empty job cgroups under `place` of workers that are gone (`deadWorker`: one
    /// known to be, whatever /proc says yet).
    /// - Returns: how many were removed.
    @discardableResult
    static func removeLeftovers(under place: String, deadWorker: Int32? = nil) -> Int {
        let entries = (try? Directory(path: place).entries()) ?? []  // Not listable: nothing to remove.
        var removed = 0
        for entry in entries where entry.string.hasPrefix(prefix) {
            let parts = entry.string.dropFirst(prefix.count).split(separator: "-")
            guard parts.count == 3, let pid = Int32(parts[0]), let start = UInt64(parts[1]) else { continue }
            if pid != deadWorker, let live = ProcessTable.info(pid), live.startTime == start, !live.isZombie { continue }
            if ControlGroup(path: place + "/" + entry.string).removeIfEmpty() { removed += 1 }
        }
        return removed
    }
}

/// A job cgroup with the two descriptors the spawner uses (`cgroup.procs`, and the directory for
/// `CLONE_INTO_CGROUP`), opened once and kept open while the cgroup is kept: a job that takes a
/// kept cgroup opens nothing. Both are close-on-exec.
final class OpenControlGroup: Sendable {
    let group: ControlGroup
    let procs: Int32
    let directory: Int32

    /// - Throws: `SystemError` when either cannot be opened (none is left open).
    init(_ group: ControlGroup) throws(SystemError) {
        self.group = group
        procs = try group.openProcs()
        do { directory = try group.openDirectory() } catch {
            FD.close(procs)
            throw error
        }
    }

    var path: String { group.path }

    func closeDescriptors() {
        FD.close(procs)
        FD.close(directory)
    }
}
