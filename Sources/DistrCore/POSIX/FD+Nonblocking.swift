@preconcurrency import Glibc
import CDistrSys

/// What a read or write on a nonblocking descriptor did: moved bytes, hit end of stream, or
/// would have had to wait. Waiting is a result, not an error (the NIO discipline).
package enum IOResult: Equatable, Sendable {
    /// This many bytes (at least 1) were moved.
    case bytes(Int)
    /// The peer closed its end (reads only).
    case endOfStream
    /// Nothing could be moved without waiting (`EAGAIN`).
    case wouldBlock
}

extension FD {
    /// Reads what is there without waiting, retrying EINTR. The corresponding C function is `read`.
    /// - Throws: `SystemError` from `read` for anything but EINTR and EAGAIN.
    @inline(__always)
    package static func readNonblocking(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .endOfStream }
            let code = Glibc.errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw SystemError("read", errno: code)
        }
    }

    /// Sends one byte on a socket without waiting and without SIGPIPE when the peer has gone (a
    /// rank keeps the default disposition); whether it went is not reported. The corresponding
    /// C function is `send` with `MSG_NOSIGNAL | MSG_DONTWAIT`.
    package static func sendByteQuietly(_ fd: Int32, _ byte: UInt8) {
        var value = byte
        while Glibc.send(fd, &value, 1, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) < 0 && Glibc.errno == EINTR {}
    }

    /// Sends what the socket takes now, without waiting even on a blocking socket, and without
    /// SIGPIPE when the peer has gone. Returns `.bytes` with the count taken (possibly short) or
    /// `.wouldBlock`. The corresponding C function is `send` with `MSG_DONTWAIT | MSG_NOSIGNAL`.
    /// - Throws: `SystemError` from `send` for anything but EINTR and EAGAIN.
    package static func sendNonblocking(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) -> IOResult {
        while true {
            let n = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            if n >= 0 { return .bytes(n) }
            let code = Glibc.errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw SystemError("send", errno: code)
        }
    }

    /// Writes `first` then `second` with one call, without waiting, retrying EINTR. The vector
    /// lives on the stack: no allocation. Returns `.bytes` with the count taken (possibly short)
    /// or `.wouldBlock`. The corresponding C function is `writev`.
    /// - Throws: `SystemError` from `writev` for anything but EINTR and EAGAIN.
    @inline(__always)
    package static func writeNonblocking(
        _ fd: Int32, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) throws(SystemError) -> IOResult {
        while true {
            let n = withUnsafeTemporaryAllocation(of: iovec.self, capacity: 2) { vectors -> Int in
                vectors[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count)
                vectors[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count)
                return writev(fd, vectors.baseAddress, second.count > 0 ? 2 : 1)
            }
            if n >= 0 { return .bytes(n) }
            let code = Glibc.errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw SystemError("writev", errno: code)
        }
    }

    /// Sets close-on-exec on a descriptor distr did not open itself (one it inherited).
    /// The corresponding C function is `fcntl`.
    /// - Throws: `SystemError` from `fcntl`.
    package static func setCloseOnExec(_ fd: Int32) throws(SystemError) {
        let flags = try retryingEINTR("fcntl") { fcntl(fd, F_GETFD) }
        _ = try retryingEINTR("fcntl") { fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }

    /// Creates the directory `name` (one component, as bytes) in `directory`.
    /// The corresponding C function is `mkdirat`.
    /// - Throws: `SystemError` from `mkdirat` (`.exists` when the name is taken).
    package static func makeDirectory(_ name: [UInt8], in directory: Int32, permissions: UInt32 = 0o755) throws(SystemError) {
        let code = FileIO.call(name) { mkdirat(directory, $0, mode_t(permissions)) }.errno
        if code != 0 { throw SystemError("mkdirat", errno: code) }
    }

    /// Removes the file `name` (one component, as bytes) from `directory`, never following a symlink.
    /// The corresponding C function is `unlinkat`.
    /// - Throws: `SystemError` from `unlinkat`.
    package static func unlink(_ name: [UInt8], in directory: Int32) throws(SystemError) {
        let code = FileIO.call(name) { unlinkat(directory, $0, 0) }.errno
        if code != 0 { throw SystemError("unlinkat", errno: code) }
    }

    /// Gives the file `source` (a path; a symlink there is not followed) a second name `name`
    /// (one component, as bytes, which must not exist) in `directory`.
    /// The corresponding C function is `linkat`.
    /// - Throws: `SystemError` from `linkat` (`.exists` when the name is taken, `EXDEV` across file systems).
    package static func link(_ source: String, into directory: Int32, name: [UInt8]) throws(SystemError) {
        let code = FileIO.call(name) { linkat(AT_FDCWD, source, directory, $0, 0) }.errno
        if code != 0 { throw SystemError("linkat", errno: code) }
    }

    /// Gives the file `name` in `directory` (a symlink there is not followed) a second name
    /// `target` (which must not exist) in `targetDirectory`; both names are one component, as
    /// bytes. The corresponding C function is `linkat`.
    /// - Throws: `SystemError` from `linkat` (`.exists` when the name is taken, `EXDEV` across file systems).
    package static func link(_ name: [UInt8], in directory: Int32, to target: [UInt8], in targetDirectory: Int32) throws(SystemError) {
        var code: Int32 = 0
        _ = FileIO.call(name) { source in
            let linked = FileIO.call(target) { linkat(directory, source, targetDirectory, $0, 0) }
            code = linked.errno
            return linked.result
        }
        if code != 0 { throw SystemError("linkat", errno: code) }
    }
}

extension FD {
    /// The most descriptors `wait(for:writing:seconds:)` watches at once.
    package static let maxWaitDescriptors = 16

    /// Waits at most `seconds` (to the nanosecond: finer than `poll`) until one of `descriptors`
    /// (at most `maxWaitDescriptors`) can be read, or written with `writing`, or has hung up.
    /// Returns false when the time passed first, or a signal ended the wait early (the caller
    /// looks again and waits for what is left). The corresponding C function is `ppoll`.
    /// - Throws: `SystemError` from `ppoll` for anything but EINTR.
    package static func wait(for descriptors: UnsafeBufferPointer<Int32>, writing: Bool = false, seconds: Double) throws(SystemError) -> Bool {
        let nanoseconds = Int(max(0, min(seconds, 1)) * 1e9)
        let events = Int16(writing ? POLLOUT : POLLIN)
        let n = cdistr_poll_nanoseconds(descriptors.baseAddress, Int32(descriptors.count), events, nanoseconds)
        if n >= 0 { return n > 0 }
        let code = Glibc.errno
        if code == EINTR { return false }
        throw SystemError("ppoll", errno: code)
    }

    /// Waits up to `seconds` (at most 1; 0: only looks) until `fd` can be written; false when it
    /// cannot by then. The corresponding C function is `ppoll`.
    /// - Throws: `SystemError` from `ppoll` for anything but EINTR.
    package static func waitWritable(_ fd: Int32, seconds: Double) throws(SystemError) -> Bool {
        try withUnsafePointer(to: fd) { pointer throws(SystemError) in
            try wait(for: UnsafeBufferPointer(start: pointer, count: 1), writing: true, seconds: seconds)
        }
    }

    /// Waits until one of `descriptors` is ready (readable, or writable where `writing` says so;
    /// a hang-up or an error counts as ready), or `deadline` passes; negative entries are
    /// skipped. Returns one flag per entry, all false when the deadline passed first.
    /// The corresponding C function is `poll`.
    /// - Throws: `SystemError` from `poll` for anything but EINTR (which is retried).
    package static func waitReady(_ descriptors: [(fd: Int32, writing: Bool)], until deadline: Deadline) throws(SystemError) -> [Bool] {
        var entries = descriptors.map { pollfd(fd: $0.fd, events: Int16($0.writing ? POLLOUT : POLLIN), revents: 0) }
        _ = try retryingEINTR("poll") { poll(&entries, nfds_t(entries.count), deadline.pollTimeout) }
        return entries.map { $0.revents != 0 }
    }

    /// Waits until at least one of `descriptors` can be read (or has hung up); negative entries
    /// are skipped. Returns one flag per entry, true for each that is ready.
    /// The corresponding C function is `poll`.
    /// - Throws: `SystemError` from `poll` for anything but EINTR (which is retried).
    package static func waitReadable(_ descriptors: [Int32], timeout: Int32 = -1) throws(SystemError) -> [Bool] {
        var entries = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        _ = try retryingEINTR("poll") { poll(&entries, nfds_t(entries.count), timeout) }
        return entries.map { $0.revents != 0 }
    }

    /// Copies up to `count` bytes from `input` to `output` in the kernel, from and to each
    /// descriptor's offset; returns the count copied, 0 at the end of `input`. EINTR is retried.
    /// The corresponding C function is `copy_file_range`.
    /// - Throws: `SystemError` from `copy_file_range` (`EXDEV`, `EINVAL`, `ENOSYS` where the file
    ///   systems cannot do it: copy with `read` and `write` instead).
    package static func copyRange(from input: Int32, to output: Int32, count: Int) throws(SystemError) -> Int {
        try retryingEINTR("copy_file_range") { cdistr_copy_file_range(input, output, count) }
    }

    /// Sets a file's access and modification times to `nanoseconds` since the epoch.
    /// The corresponding C function is `futimens`.
    /// - Throws: `SystemError` from `futimens`.
    package static func setTimes(_ fd: Int32, nanoseconds: Int64) throws(SystemError) {
        var times = [FileIO.timespec(nanoseconds), FileIO.timespec(nanoseconds)]
        if futimens(fd, &times) != 0 { throw .current("futimens") }
    }
}
