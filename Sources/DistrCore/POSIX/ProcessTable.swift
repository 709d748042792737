@preconcurrency import Glibc
import CDistrSys

/// What `/proc` says about processes: the few facts distr needs to find a job's processes
/// after they have left their process group, their environment, or their parent.
package enum ProcessTable {
    /// One process, as far as it could be read (it may exit while being read).
    package struct Process: Sendable, Equatable {
        package var pid: pid_t
        package var processGroup: pid_t
        package var startTime: UInt64
        /// Exited, not yet reaped.
        package var isZombie: Bool
    }

    /// Every process but this one.
    package static func all() -> [pid_t] {
        let entries = (try? Directory(path: "/proc").entries()) ?? []  // /proc always exists; unreadable: nothing can be found.
        let me = getpid()
        return entries.compactMap { pid_t($0.string) }.filter { $0 != me }
    }

    /// This process's children, from /proc/self/task/*/children (one list per thread).
    package static func children() -> [pid_t] {
        let tasks = (try? Directory(path: "/proc/self/task").entries()) ?? []  // As in `all`: nothing readable, nothing found.
        var children: [pid_t] = []
        for task in tasks where Int(task.string) != nil {
            let path = "/proc/self/task/\(task.string)/children"
            guard let list = try? FileIO.readAll(path) else { continue }  // A thread that just ended has no children.
            children += list.split(separator: UInt8(ascii: " ")).compactMap { pid_t(String(decoding: $0, as: UTF8.self)) }
        }
        return children
    }

    /// The process group and start time (clock ticks since boot) of `pid`; nil when it is gone.
    package static func info(_ pid: pid_t) -> Process? {
        guard let stat = try? FileIO.readAll("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")) else {  // Gone: no info.
            return nil
        }
        // Fields after the command name: state ppid pgrp session ... starttime is field 22.
        let fields = stat[(close + 2)...].split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        guard fields.count > 19, let group = pid_t(fields[2]), let start = UInt64(fields[19]) else { return nil }
        return Process(pid: pid, processGroup: group, startTime: start, isZombie: fields[0] == "Z")
    }

    /// True when `pid`'s environment holds exactly `entry` (`NAME=VALUE`).
    package static func environment(of pid: pid_t, contains entry: String) -> Bool {
        // Gone or not ours to read: it cannot be shown to hold the entry.
        guard let environ = try? FileIO.readAll("/proc/\(pid)/environ") else { return false }  // Gone, or not ours to read.
        let wanted = Array(entry.utf8)
        return environ.split(separator: 0).contains { $0.elementsEqual(wanted) }
    }

    /// The working directory of `pid`, nil when it cannot be read.
    package static func workingDirectory(of pid: pid_t) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBufferPointer { raw in
            raw.baseAddress.map { readlink("/proc/\(pid)/cwd", UnsafeMutableRawPointer($0).assumingMemoryBound(to: CChar.self), 4095) } ?? -1
        }
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
    }

    /// Sends SIGKILL to `pid`, then waits (at most 100 ms) until it has died, so that its
    /// children are reparented before the next look. The corresponding C functions are `kill`
    /// and `pidfd_open`.
    package static func kill(_ pid: pid_t) {
        let fd = cdistr_pidfd_open(pid)
        Glibc.kill(pid, SIGKILL)
        guard fd >= 0 else { return }
        defer { FD.close(fd) }
        _ = try? FD.waitReadable(fd, until: .after(0.1))  // Failed or timed out: the next pass looks again.
    }

    /// Makes `pid` yield the CPU to every other process (nice 19), for work that may wait.
    /// The corresponding C function is `setpriority`.
    /// - Throws: `SystemError` (ESRCH when it has exited already).
    package static func lowerPriority(_ pid: pid_t) throws(SystemError) {
        guard setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), 19) == 0 else {
            throw SystemError("setpriority", errno: errno)
        }
    }

    /// Limits the CPU time `pid` may use: at `seconds` the kernel sends it SIGXCPU, a second
    /// later SIGKILL. Unlike a wall-clock limit it does not end work that only waited for the CPU.
    /// The corresponding C function is `prlimit`.
    /// - Throws: `SystemError` (ESRCH when it has exited already).
    package static func limitCPUTime(_ pid: pid_t, seconds: Int) throws(SystemError) {
        guard cdistr_limit_cpu_seconds(pid, UInt(seconds)) == 0 else {
            throw SystemError("prlimit", errno: errno)
        }
    }

    /// Signals a whole process group. The corresponding C function is `kill`.
    package static func signalGroup(_ group: pid_t, _ signal: Int32) {
        guard group > 1 else { return }
        Glibc.kill(-group, signal)
    }

    /// This process's start time, to tell a live worker from a reused pid.
    /// Read once: it never changes, and a worker writes it into every job's record.
    package static let ownStartTime: UInt64 = info(getpid())?.startTime ?? 0
}
