@preconcurrency import Glibc

extension FD {
    /// Creates a file in `directory` that has no name: it is made with `mkstemp` (mode 0600) and
    /// unlinked at once, so it disappears when the descriptor is closed, however the process ends.
    /// The corresponding C functions are `mkstemp` and `unlink`.
    /// - Throws: `SystemError` from `mkstemp`.
    package static func unnamedTemporaryFile(in directory: String) throws(SystemError) -> Int32 {
        var template = Array((directory + "/distr-output-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd < 0 { throw .current("mkstemp in \(directory)") }
        _ = template.withUnsafeBufferPointer { Glibc.unlink($0.baseAddress!) }
        // mkstemp has no close-on-exec flag; ranks are never spawned by the master, but stay tidy.
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    /// Reads up to `count` bytes at `offset` without moving the file position; 0 at the end.
    /// The corresponding C function is `pread`.
    /// - Throws: `SystemError` from `pread`.
    package static func read(_ fd: Int32, at offset: Int, into buffer: UnsafeMutableRawPointer, count: Int) throws(SystemError) -> Int {
        try retryingEINTR("pread") { Glibc.pread(fd, buffer, count, off_t(offset)) }
    }

    /// Copies up to `count` bytes of `input` from `offset` to `output` in the kernel, without
    /// moving `input`'s file position; returns the count copied (0 at the end of `input`).
    /// Retries EINTR and waits on a full nonblocking `output`. The corresponding C function is `sendfile`.
    /// - Throws: `SystemError` from `sendfile` (`EINVAL` where `output` cannot take it: copy
    ///   with `read` and `write` instead).
    package static func sendFile(from input: Int32, at offset: Int, count: Int, to output: Int32) throws(SystemError) -> Int {
        var position = off_t(offset)
        while true {
            let n = Glibc.sendfile(output, input, &position, count)
            if n >= 0 { return n }
            try retryOrWaitWritable(output, after: "sendfile")
        }
    }

    /// True when `fd` is a terminal. The corresponding C function is `isatty`.
    package static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }
}
