@preconcurrency import Glibc

/// A signal number with a name, so code outside POSIX never spells `SIGTERM`.
package struct Signal: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    package let rawValue: Int32
    package init(rawValue: Int32) { self.rawValue = rawValue }

    package static let interrupt = Signal(rawValue: SIGINT)
    package static let terminate = Signal(rawValue: SIGTERM)
    package static let kill = Signal(rawValue: SIGKILL)
    package static let hangup = Signal(rawValue: SIGHUP)
    package static let pipe = Signal(rawValue: SIGPIPE)
    /// Sent by the kernel when a process reaches its CPU-time limit (`RLIMIT_CPU`).
    package static let cpuLimit = Signal(rawValue: SIGXCPU)

    package var description: String {
        switch rawValue {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGKILL: "SIGKILL"
        case SIGHUP: "SIGHUP"
        case SIGPIPE: "SIGPIPE"
        case SIGXCPU: "SIGXCPU"
        default: "signal \(rawValue)"
        }
    }

    /// Sends this signal to process `pid`. The corresponding C function is `kill`.
    /// - Throws: `SystemError` from `kill` (`ESRCH` when it has already gone).
    package func send(toProcess pid: Int32) throws(SystemError) {
        if Glibc.kill(pid, rawValue) != 0 { throw .current("kill") }
    }

    /// Sends this signal to every process in group `group`. The corresponding C function is `kill`.
    /// - Throws: `SystemError` from `kill`.
    package func send(toGroup group: Int32) throws(SystemError) {
        if Glibc.kill(-group, rawValue) != 0 { throw .current("kill") }
    }
}
