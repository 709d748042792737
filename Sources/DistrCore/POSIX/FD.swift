@preconcurrency import Glibc
import CDistrSys

/// Thin helpers over raw descriptors. Every descriptor distr opens is close-on-exec, so spawned
/// ranks inherit only what the spawn file actions give them.
package enum FD {
    /// Closes `fd`, ignoring errors (there is nothing useful to do; EINTR must not be retried).
    package static func close(_ fd: Int32) {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    /// A close-on-exec copy of `fd` (same open file). The corresponding C function is `fcntl(F_DUPFD_CLOEXEC)`.
    /// - Throws: `SystemError` from `fcntl`.
    package static func duplicate(_ fd: Int32) throws(SystemError) -> Int32 {
        try retryingEINTR("fcntl") { fcntl(fd, F_DUPFD_CLOEXEC, 0) }
    }

    /// Writes all of `bytes`, retrying short writes and EINTR. Blocks on a blocking descriptor;
    /// on a nonblocking one it waits with `poll` when the kernel buffer is full.
    package static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n >= 0 {
                offset += n
                continue
            }
            try retryOrWaitWritable(fd, after: "write")
        }
    }

    /// After a failed write-like call on `fd`: returns for EINTR (try again), waits with `poll`
    /// for EAGAIN (a full nonblocking descriptor; then try again), throws anything else. Reads
    /// errno at once.
    /// - Throws: `SystemError` naming `call`.
    static func retryOrWaitWritable(_ fd: Int32, after call: String) throws(SystemError) {
        let code = Glibc.errno
        if code == EINTR { return }
        if code == EAGAIN || code == EWOULDBLOCK {
            try waitWritable(fd)
            return
        }
        throw SystemError(call, errno: code)
    }

    /// Writes all of `pieces` in order, with one `writev` while they fit, retrying short writes
    /// and EINTR, waiting with `poll` on a full nonblocking descriptor.
    package static func writeAll(_ fd: Int32, _ pieces: [UnsafeRawBufferPointer]) throws(SystemError) {
        var vectors = pieces.filter { !$0.isEmpty }.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        var first = 0
        while first < vectors.count {
            let n = vectors.withUnsafeMutableBufferPointer { writev(fd, $0.baseAddress! + first, Int32(min($0.count - first, 1024))) }
            if n < 0 {
                try retryOrWaitWritable(fd, after: "writev")
                continue
            }
            // Drop what was written: whole pieces, then the start of the next.
            var left = n
            while first < vectors.count && left >= vectors[first].iov_len {
                left -= vectors[first].iov_len
                first += 1
            }
            if left > 0 {
                vectors[first].iov_base = vectors[first].iov_base.map { $0 + left }
                vectors[first].iov_len -= left
            }
        }
    }

    package static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
        let result = bytes.withUnsafeBytes { buffer in Result { () throws(SystemError) in try writeAll(fd, buffer) } }
        try result.get()
    }

    /// Reads up to `count` bytes; returns 0 at end of stream. The corresponding C function is `read`.
    package static func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) throws(SystemError) -> Int {
        try retryingEINTR("read") { Glibc.read(fd, buffer, count) }
    }

    /// Reads into the start of `buffer`; returns the count, 0 at end of stream.
    package static func read(_ fd: Int32, into buffer: inout [UInt8]) throws(SystemError) -> Int {
        let result = buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) in try read(fd, into: raw.baseAddress!, count: raw.count) }
        }
        return try result.get()
    }

    /// Waits until `fd` can be written, or throws after `timeout` milliseconds (-1: forever).
    static func waitWritable(_ fd: Int32, timeout: Int32 = -1) throws(SystemError) {
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let n = try retryingEINTR("poll") { poll(&pfd, 1, timeout) }
        if n == 0 { throw SystemError("poll", errno: ETIMEDOUT) }
    }

    /// Waits until `fd` can be read (or has hung up); false when the deadline passes first.
    /// The corresponding C function is `poll`.
    package static func waitReadable(_ fd: Int32, until deadline: Deadline) throws(SystemError) -> Bool {
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = try retryingEINTR("poll") { poll(&pfd, 1, deadline.pollTimeout) }
            if n > 0 { return true }
            // poll rounds to milliseconds: wait out any remainder.
            if deadline.hasPassed { return false }
        }
    }

    /// Reads one line (without its newline) a byte at a time, so that nothing after it is
    /// consumed; at most `limit` bytes. Nil at end of stream, on an error, or when the deadline
    /// passes first: a child's ready line, awaited with a bound.
    package static func readLine(_ fd: Int32, until deadline: Deadline, limit: Int = 512) -> [UInt8]? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < limit {
            guard (try? waitReadable(fd, until: deadline)) == true else { return nil }  // Failed or timed out: no line.
            guard (try? read(fd, into: &byte, count: 1)) == 1 else { return nil }  // An error is the end, as end of stream is.
            if byte == UInt8(ascii: "\n") { return line }
            line.append(byte)
        }
        return line
    }

    /// Waits until `fd` can be read (or has hung up); returns false after `timeout` ms.
    package static func waitReadable(_ fd: Int32, timeout: Int32) throws(SystemError) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let n = try retryingEINTR("poll") { poll(&pfd, 1, timeout) }
        return n > 0
    }

    package static func setNonblocking(_ fd: Int32, _ on: Bool = true) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK)
    }

    /// Asks for a pipe of `bytes` capacity (the kernel rounds it up to a power of two pages);
    /// returns the capacity the pipe has afterwards, or nil when it cannot be read. A refusal
    /// (past `/proc/sys/fs/pipe-max-size` or the user's pipe quota) is not an error: the pipe
    /// keeps its size. The corresponding C function is `fcntl(F_SETPIPE_SZ)`.
    @discardableResult
    package static func setPipeSize(_ fd: Int32, bytes: Int) -> Int? {
        let size = cdistr_set_pipe_size(fd, Int32(clamping: bytes))
        return size > 0 ? Int(size) : nil
    }

    /// A close-on-exec pipe: (read end, write end).
    package static func pipe() throws(SystemError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        _ = try retryingEINTR("pipe2") { cdistr_pipe_cloexec(&fds) }
        return (fds[0], fds[1])
    }

    /// A close-on-exec connected pair of Unix stream sockets.
    package static func socketPair() throws(SystemError) -> (Int32, Int32) {
        try UnixSocket.pair(.stream)
    }

    /// Number of descriptors this process has open (from /proc/self/fd); used by leak tests.
    package static func openCount(pid: Int32? = nil) -> Int {
        let path = pid.map { "/proc/\($0)/fd" } ?? "/proc/self/fd"
        guard let entries = try? Directory(path: path).entries() else { return -1 }  // -1 says "could not count"; leak tests fail on it.
        // The directory stream's own descriptor was open while listing.
        return entries.count - (pid == nil ? 1 : 0)
    }
}
