@preconcurrency import Glibc
import CDistrSys

/// This process: its id, its standard streams, ending it.
package enum CurrentProcess {
    /// The corresponding C function is `getpid`.
    package static var id: Int32 { getpid() }

    /// How many descriptors this process may have open (the soft `RLIMIT_NOFILE`); 1024, the
    /// usual default, when it cannot be read or is unlimited. The corresponding C function is
    /// `getrlimit`.
    package static var openFileLimit: Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 1024 }
        return Int(clamping: limit.rlim_cur)
    }

    /// `path` as an absolute path: unchanged when it starts with "/", else joined to this
    /// process's working directory (not resolved further: `..` and symlinks stay). The
    /// corresponding C function is `getcwd`.
    /// - Throws: `SystemError` from `getcwd` (the working directory was removed, or is deeper
    ///   than `PATH_MAX`).
    package static func absolutePath(_ path: String) throws(SystemError) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { throw .current("getcwd") }
        let directory = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if path.isEmpty || path == "." { return directory }
        return (directory == "/" ? "" : directory) + "/" + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
    }

    /// The process that started this one (or the subreaper or init that adopted it after that
    /// one ended). The corresponding C function is `getppid`.
    package static var parentID: Int32 { getppid() }

    /// Makes every thread of this process allocate from one malloc arena. glibc otherwise gives
    /// each new thread an arena of its own (a 64 MiB reservation, its unmapping and protection,
    /// and fresh pages to fault in): about 30 system calls and 30 page faults of the master's
    /// start, whose threads each live a few milliseconds and allocate little. The corresponding
    /// C function is `mallopt` (`M_ARENA_MAX`).
    package static func useOneMallocArena() {
        _ = cdistr_malloc_arena_max(1)  // Fails only for an unknown option: the default arenas then stay.
    }

    /// Makes this process a child subreaper: descendants orphaned by their parents are reparented
    /// here, not to init, so they can be found and ended. The corresponding C function is `prctl`
    /// (`PR_SET_CHILD_SUBREAPER`).
    /// - Throws: `SystemError` from `prctl`.
    package static func becomeChildSubreaper() throws(SystemError) {
        if cdistr_set_child_subreaper() != 0 { throw .current("prctl") }
    }

    /// Asks the kernel to send `signal` to this process when the thread that started it ends
    /// (`PR_SET_PDEATHSIG`). Check `parentID` after it: a parent that ended just before does not
    /// trigger it. The corresponding C function is `prctl`.
    /// - Throws: `SystemError` from `prctl` (`EINVAL` only for an invalid signal).
    package static func setParentDeathSignal(_ signal: Signal) throws(SystemError) {
        if cdistr_set_parent_death_signal(signal.rawValue) != 0 { throw .current("prctl") }
    }

    /// Forks this process. Only for a process that has one thread: the child runs Swift code,
    /// which is safe after `fork` only when no other thread could have held a lock.
    /// The corresponding C function is `fork`.
    /// - Returns: the child's pid in the parent, 0 in the child.
    /// - Throws: `SystemError` from `fork`.
    package static func fork() throws(SystemError) -> Int32 {
        let pid = Glibc.fork()
        if pid < 0 { throw .current("fork") }
        return pid
    }

    /// Points standard input and output at `/dev/null` (standard error is kept), so that this
    /// process holds neither stream of whoever started it. The corresponding C functions are
    /// `open` and `dup2`.
    /// - Throws: `SystemError` from `open` or `dup2`.
    package static func detachStandardInputAndOutput() throws(SystemError) {
        let null = try FileDescriptor.open("/dev/null", .readWrite).release()
        // With standard input closed, /dev/null itself gets number 0: keep it then.
        defer { if null > 1 { FD.close(null) } }
        for target: Int32 in [0, 1] {
            _ = try retryingEINTR("dup2") { dup2(null, target) }
        }
    }

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

    /// CPU seconds (user and system) the calling thread has used. The corresponding C function
    /// is `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
    package static var threadCPUSeconds: Double { Clock.seconds(CLOCK_THREAD_CPUTIME_ID) }

    /// CPU seconds (user and system) used by the children this process has waited for, and by
    /// theirs. The corresponding C function is `getrusage(RUSAGE_CHILDREN)`.
    package static var waitedChildrenCPUSeconds: Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_CHILDREN.rawValue), &usage)
        let seconds = { (time: timeval) in Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}

extension Threads {
    /// Lets another thread on this core run. The corresponding C function is `sched_yield`.
    @inline(__always)
    package static func yield() { _ = cdistr_yield() }
}
