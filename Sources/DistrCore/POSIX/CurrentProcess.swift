@preconcurrency import Glibc
import CDistrSys

/// This process: its id, its standard streams, ending it.
package enum CurrentProcess {
    /// The corresponding C function is `getpid`.
    package static var id: Int32 { getpid() }

    /// Flushes buffered standard output (`print`), then ends the process with `status`.
    /// The corresponding C functions are `fflush` and `exit`.
    package static func exit(_ status: Int32) -> Never {
        fflush(stdout)
        Glibc.exit(status)
    }

    /// Writes `text` to standard error (unbuffered), after flushing standard output so the two
    /// come out in order. The corresponding C function is `fputs`.
    package static func printError(_ text: String) {
        fflush(stdout)
        fputs(text, stderr)
    }

    /// Flushes buffered standard output. The corresponding C function is `fflush`.
    package static func flushOutput() { fflush(stdout) }
}

extension Threads {
    /// Lets another thread on this core run. The corresponding C function is `sched_yield`.
    @inline(__always)
    package static func yield() { _ = cdistr_yield() }
}
