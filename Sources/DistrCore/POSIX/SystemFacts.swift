@preconcurrency import Glibc
import CDistrSys

/// Facts about this machine for `distr-master status`: each read fresh, each failure a zero or
/// an empty string rather than an error (a status report with one field missing is still useful).
package enum SystemFacts {
    /// The corresponding C function is `gethostname`.
    package static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// System name and release ("Linux 6.1.0-18-amd64") and machine ("x86_64"). The
    /// corresponding C function is `uname`.
    package static var uname: (system: String, machine: String) {
        var names = utsname()
        guard Glibc.uname(&names) == 0 else { return ("", "") }
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return ("\(text(names.sysname)) \(text(names.release))", text(names.machine))
    }

    /// Processors online. The corresponding C function is `sysconf(_SC_NPROCESSORS_ONLN)`.
    package static var cores: Int { max(0, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// CPUs this process may run on (its affinity mask; the online count if that cannot be read).
    /// The corresponding C function is `sched_getaffinity`.
    package static var usableCores: Int {
        let n = Int(cdistr_usable_cpus())
        return n > 0 ? n : max(1, cores)
    }

    /// Threads runnable on the whole machine at this moment, the reading one included (the
    /// first number of the fourth field of /proc/loadavg), or nil when it cannot be read.
    package static var runnableThreads: Int? {
        guard let text = try? FileIO.readAll("/proc/loadavg") else { return nil }  // No /proc: unknown.
        let fields = text.split(separator: 0x20)
        guard fields.count >= 4, let slash = fields[3].firstIndex(of: 0x2F) else { return nil }
        return Int(String(decoding: fields[3][..<slash], as: UTF8.self))
    }

    /// 1, 5 and 15 minute load averages. The corresponding C function is `getloadavg`.
    package static var loadAverages: [Double] {
        var loads = [Double](repeating: 0, count: 3)
        let n = getloadavg(&loads, 3)
        return n > 0 ? Array(loads.prefix(Int(n))) : []
    }

    /// Memory available for new work: `MemAvailable` from /proc/meminfo (free plus reclaimable
    /// caches), else free pages (`sysconf(_SC_AVPHYS_PAGES)`).
    package static var availableMemoryBytes: UInt64 {
        if let text = try? FileIO.readAll("/proc/meminfo") {  // No /proc: free pages below.
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                let fields = line.split(separator: " ")
                if fields.count >= 2, let kib = UInt64(fields[1]) { return kib * 1024 }
            }
        }
        let pages = sysconf(Int32(_SC_AVPHYS_PAGES))
        let size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? UInt64(pages) * UInt64(size) : 0
    }

    /// Bytes an unprivileged user may still write in the file system holding `path`. The
    /// corresponding C function is `statvfs`.
    package static func freeDiskBytes(_ path: String) -> UInt64 {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return 0 }
        return UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
    }
}
