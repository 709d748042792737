@preconcurrency import Glibc
import CDistrSys

/// Finds processes of a job that left their rank's process group (setsid, double fork). The
/// worker is a child subreaper, so such processes stay its descendants; the job id in their
/// environment says which job they belong to.
enum Descendants {
    /// Sends SIGKILL to every process of the job that is still around once its ranks have exited.
    /// Such processes have lost their parents, so the kernel has reparented them to this worker
    /// (a child subreaper): they are among its direct children. Killing one can orphan its own
    /// children in turn, so this repeats until a pass finds none (bounded).
    /// - Returns: how many were signalled.
    @discardableResult
    static func killEscaped(jobID: String) -> Int {
        let marker = Array("DISTR_JOB_ID=\(jobID)".utf8)
        var killed = Set<pid_t>()
        for _ in 0..<8 {
            let found = directChildren().filter { pid in
                !killed.contains(pid)
                    && ((try? FileIO.readAll("/proc/\(pid)/environ"))?.split(separator: 0).contains { Array($0) == marker } ?? false)
            }
            if found.isEmpty { break }
            for pid in found {
                kill(pid, SIGKILL)
                killed.insert(pid)
            }
            // Let the kernel reparent the children of what was just killed.
            for pid in found { waitGone(pid) }
        }
        return killed.count
    }

    /// This process's children, from /proc/self/task/*/children (one list per thread).
    static func directChildren() -> [pid_t] {
        guard let dir = opendir("/proc/self/task") else { return [] }
        defer { closedir(dir) }
        var children: [pid_t] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard Int(name) != nil, let list = try? FileIO.readAll("/proc/self/task/\(name)/children") else { continue }
            children += list.split(separator: UInt8(ascii: " ")).compactMap { pid_t(String(decoding: $0, as: UTF8.self)) }
        }
        return children
    }

    /// Waits (at most 100 ms) until `pid` has died, so its children are reparented here. A pidfd
    /// becomes readable when the process exits. The corresponding C function is `pidfd_open`.
    static func waitGone(_ pid: pid_t) {
        let fd = cdistr_pidfd_open(pid)
        guard fd >= 0 else { return }
        defer { FD.close(fd) }
        _ = try? FD.waitReadable(fd, timeout: 100)
    }
}
