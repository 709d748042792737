import Synchronization

/// The process groups of a worker's own helpers (today: its background compile of the Python
/// modules). They are the worker's children like the processes a job leaves behind, which a
/// job's sweep ends, but belong to no job; and whatever a helper orphans (a `python3` that is
/// a shell script, as pyenv's is, runs a few) is reparented to the worker, the child
/// subreaper, in the helper's process group.
package final class HelperProcesses: Sendable {
    private let groups = Mutex<Set<Int32>>([])

    package init() {}

    /// Starts a helper with `spawn` (which returns its pid, also its process group) and notes
    /// it, under the lock a sweep also takes: a sweep that listed the helper as a child waits
    /// until it is noted.
    package func start(_ spawn: () throws(SystemError) -> Int32) throws(SystemError) -> Int32 {
        try groups.withLock { groups throws(SystemError) in
            let pid = try spawn()
            groups.insert(pid)
            return pid
        }
    }

    /// The helper whose pid is `group` has ended (its orphans, if any, are ordinary leftovers
    /// from then on: the next sweep ends them).
    package func ended(_ group: Int32) { _ = groups.withLock { $0.remove(group) } }

    /// `children` without the helpers and their orphans. Reads each child's process group only
    /// while a helper runs.
    package func excluded(from children: [Int32]) -> [Int32] {
        groups.withLock { groups in
            if groups.isEmpty { return children }
            return children.filter { child in ProcessTable.info(child).map { !groups.contains($0.processGroup) } ?? false }
        }
    }
}
