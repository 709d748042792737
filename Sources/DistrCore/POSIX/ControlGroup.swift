@preconcurrency import Glibc

/// A cgroup v2 directory that holds one job's processes, the way Slurm's proctrack/cgroup
/// tracks a job: whatever a rank starts stays in its cgroup, through `setsid`, `env -i`,
/// daemonizing or the death of its parent, and `cgroup.kill` ends them all at once.
///
/// Made where the worker may make one: under the worker's own cgroup in the unified hierarchy
/// (as root, or with a delegated cgroup). Elsewhere `placeForJobs()` says why not, and the
/// worker falls back to process groups, its child subreaper sweep and its job records.
package struct ControlGroup: Sendable, Equatable {
    package let path: String

    package init(path: String) { self.path = path }

    /// The directory under which this process may make job cgroups, or why there is none.
    package static func placeForJobs() -> Result<String, SystemError> {
        let mounts = (try? FileIO.readAll("/proc/self/mountinfo")) ?? []  // No cgroup v2 here.
        let own = (try? FileIO.readAll("/proc/self/cgroup")).map { String(decoding: $0, as: UTF8.self) } ?? ""  // As above.
        let mount = cgroup2MountPoint(mountinfo: mounts)
        let relative = own.split(separator: "\n").first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) }
        guard let mount, let relative else { return .failure(SystemError("cgroup2 mount", errno: ENOENT)) }
        let place = mount + (relative == "/" ? "" : relative)
        guard access(place, W_OK) == 0 else { return .failure(.current("access \(place)")) }
        return .success(place)
    }

    /// The mount point of the first cgroup2 line in `/proc/self/mountinfo`'s text, or nil.
    /// A line reads "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER". Found as
    /// bytes: every worker start runs this, and `String.contains` over the lines took about 0.3 ms.
    static func cgroup2MountPoint(mountinfo: [UInt8]) -> String? {
        mountinfo.withUnsafeBytes { text -> String? in
            Array(" - cgroup2 ".utf8).withUnsafeBytes { marker -> String? in
                guard let at = Memory.firstOffset(of: marker, in: text) else { return nil }
                let start = text[..<at].lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
                let fields = text[start..<at].split(separator: 0x20, maxSplits: 5)
                return fields.count > 4 ? String(decoding: fields[4], as: UTF8.self) : nil
            }
        }
    }

    /// Makes the cgroup `name` under `parent` unless something has that name already.
    /// - Returns: nil when the name is taken.
    package static func create(under parent: String, name: String) throws(SystemError) -> ControlGroup? {
        let path = parent + "/" + name
        if mkdir(path, 0o755) == 0 { return ControlGroup(path: path) }
        if errno == EEXIST { return nil }
        throw .current("mkdir \(path)")
    }

    /// `cgroup.procs` opened for writing, close-on-exec: a process that writes "0" to it
    /// joins the cgroup (the spawner's child does, before it runs the program).
    package func openProcs() throws(SystemError) -> Int32 {
        try retryingEINTR("open \(path)/cgroup.procs") { open(path + "/cgroup.procs", O_WRONLY | O_CLOEXEC) }
    }

    /// The cgroup's directory opened read-only, close-on-exec: a child spawned with it is born
    /// inside the cgroup (`CLONE_INTO_CGROUP`, see `SpawnRequest.controlGroupDirectory`).
    package func openDirectory() throws(SystemError) -> Int32 {
        try retryingEINTR("open \(path)") { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    }

    /// True while any process is in the cgroup (false once it is gone).
    package var isPopulated: Bool { isEmpty == false }

    /// Whether the cgroup holds no process: what `cgroup.events` says, or nil when it cannot be
    /// read (the cgroup is gone).
    package var isEmpty: Bool? {
        guard let events = try? FileIO.readAll(path + "/cgroup.events") else { return nil }  // Unreadable: removed.
        return String(decoding: events, as: UTF8.self).contains("populated 0")
    }

    /// Removes the cgroup if it holds no process (`rmdir`, which the kernel refuses otherwise).
    /// - Returns: true when it is gone.
    @discardableResult
    package func removeIfEmpty() -> Bool { rmdir(path) == 0 || errno == ENOENT }

    /// Kills every process in the cgroup (`cgroup.kill`), waits until it is empty (bounded),
    /// and removes it.
    /// - Returns: false when the cgroup could not be emptied or removed before the deadline.
    @discardableResult
    package func killAndRemove(until deadline: Deadline = .after(5)) -> Bool {
        // The usual end of a job: its processes are all gone, and the kernel removes an empty
        // cgroup at once (EBUSY while a process is in it). Spares the kill and the event reads.
        if rmdir(path) == 0 || errno == ENOENT { return true }
        let fd = open(path + "/cgroup.kill", O_WRONLY | O_CLOEXEC)
        if fd >= 0 {
            // A failed write leaves processes that the loop below reports by timing out.
            _ = write(fd, "1", 1)
            FD.close(fd)
        }
        while isPopulated {
            if deadline.hasPassed { return false }
            Deadline.pause(0.005)
        }
        return rmdir(path) == 0 || errno == ENOENT
    }
}
