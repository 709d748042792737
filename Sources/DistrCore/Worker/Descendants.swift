@preconcurrency import Glibc

/// Finds processes of a job that left their rank's process group (setsid, double fork). The
/// worker is a child subreaper, so such processes stay its descendants; the job id in their
/// environment says which job they belong to.
enum Descendants {
    /// Sends SIGKILL to every descendant of this process whose environment holds `DISTR_JOB_ID=jobID`.
    /// - Returns: how many were signalled.
    @discardableResult
    static func killEscaped(jobID: String) -> Int {
        let me = getpid()
        var parents: [pid_t: pid_t] = [:]
        guard let dir = opendir("/proc") else { return 0 }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = pid_t(name), let ppid = parentOf(pid) else { continue }
            parents[pid] = ppid
        }
        closedir(dir)
        let marker = Array("DISTR_JOB_ID=\(jobID)".utf8)
        var killed = 0
        for pid in parents.keys where pid != me {
            var current = parents[pid] ?? 0
            var depth = 0
            while current > 1 && current != me && depth < 64 {
                current = parents[current] ?? 0
                depth += 1
            }
            guard current == me else { continue }
            guard let environ = try? FileIO.readAll("/proc/\(pid)/environ") else { continue }
            let holdsMarker = environ.split(separator: 0).contains { Array($0) == marker }
            if holdsMarker {
                kill(pid, SIGKILL)
                killed += 1
            }
        }
        return killed
    }

    static func parentOf(_ pid: pid_t) -> pid_t? {
        guard let bytes = try? FileIO.readAll("/proc/\(pid)/stat") else { return nil }
        // The command name is in parentheses and may hold spaces; fields after the last ')' are fixed.
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "))
        guard fields.count > 1 else { return nil }
        return pid_t(String(decoding: fields[1], as: UTF8.self))
    }
}
