@preconcurrency import Glibc
import CDistrSys

/// A TCP socket address resolved from a host name or literal.
package struct SocketAddress: Sendable, CustomStringConvertible {
    var storage: sockaddr_storage
    var length: socklen_t

    package var family: Int32 { Int32(storage.ss_family) }

    /// The numeric host, without brackets.
    package var host: String {
        var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var copy = storage
        _ = withUnsafePointer(to: &copy) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST)
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    package var port: Int {
        var copy = storage
        return withUnsafePointer(to: &copy) { pointer in
            if family == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    package var description: String {
        family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Resolves `host` (name, IPv4 or IPv6 literal) for TCP. The corresponding C function is `getaddrinfo`.
    package static func resolve(host: String, port: Int, passive: Bool = false) throws(SocketError) -> [SocketAddress] {
        try resolve(host: host, port: port, flags: passive ? AI_PASSIVE : 0)
    }

    /// The address `host` writes out (an IPv4 or IPv6 literal), found without asking any name
    /// service; nil when `host` is a name.
    package static func numeric(host: String, port: Int) -> [SocketAddress]? {
        try? resolve(host: host, port: port, flags: AI_NUMERICHOST)  // Fails exactly when `host` is no literal: nil says so.
    }

    private static func resolve(host: String, port: Int, flags: Int32) throws(SocketError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = flags
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw SocketError.resolve(host: host, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(list) }
        var result: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            var storage = sockaddr_storage()
            let length = current.pointee.ai_addrlen
            withUnsafeMutableBytes(of: &storage) { target in
                target.copyMemory(from: UnsafeRawBufferPointer(start: current.pointee.ai_addr, count: Int(length)))
            }
            result.append(SocketAddress(storage: storage, length: length))
            node = current.pointee.ai_next
        }
        return result
    }
}

/// Socket failures, with the peer they concern.
package enum SocketError: Error, CustomStringConvertible, Sendable {
    case resolve(host: String, reason: String)
    case connect(address: String, SystemError)
    case timedOut(address: String, seconds: Double)
    case bind(address: String, SystemError)
    case system(SystemError)

    package var description: String {
        switch self {
        case .resolve(let host, let reason): "cannot resolve host '\(host)': \(reason)"
        case .connect(let address, let error): "cannot connect to \(address): \(String(cString: strerror(error.errno)))"
        case .timedOut(let address, let seconds): "no answer from \(address) within \(seconds) s"
        case .bind(let address, let error): "cannot listen on \(address): \(String(cString: strerror(error.errno)))"
        case .system(let error): error.description
        }
    }
}

/// TCP sockets: listen, accept, connect with a deadline. Every socket is close-on-exec.
package enum TCPSocket {
    static func withSockaddr<T>(_ address: SocketAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var copy = address.storage
        return withUnsafePointer(to: &copy) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, address.length) } }
    }

    static func open(family: Int32) throws(SystemError) -> Int32 {
        try retryingEINTR("socket") {
            socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
    }

    /// Binds and listens; returns the descriptor and the address actually bound (real port for 0).
    package static func listen(host: String, port: Int, backlog: Int32 = 128) throws(SocketError) -> (fd: Int32, address: SocketAddress) {
        let (fd, address) = try bind(host: host, port: port, reuseAddress: true)
        if Glibc.listen(fd, backlog) != 0 {
            let error = SystemError.current("listen")
            FD.close(fd)
            throw .bind(address: address.description, error)
        }
        return (fd, address)
    }

    /// Binds a TCP socket without listening; returns the descriptor and the address actually
    /// bound (real port for 0). Held open, such a socket keeps its port from everyone else while
    /// refusing every connection to it: a port that is certainly closed, for tests.
    package static func bind(host: String, port: Int, reuseAddress: Bool = false) throws(SocketError) -> (fd: Int32, address: SocketAddress) {
        guard let address = try SocketAddress.resolve(host: host, port: port, passive: true).first else {
            throw .resolve(host: host, reason: "no address")
        }
        let fd: Int32
        do { fd = try open(family: address.family) } catch { throw .system(error) }
        if reuseAddress {
            var on: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        let bound = withSockaddr(address) { Glibc.bind(fd, $0, $1) }
        if bound != 0 {
            let error = SystemError.current("bind")
            FD.close(fd)
            throw .bind(address: address.description, error)
        }
        return (fd, localAddress(fd) ?? address)
    }

    package static func localAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return status == 0 ? SocketAddress(storage: storage, length: length) : nil
    }

    package static func peerAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        return status == 0 ? SocketAddress(storage: storage, length: length) : nil
    }

    /// Accepts one connection (blocking). The corresponding C function is `accept4`.
    package static func accept(_ fd: Int32) throws(SystemError) -> Int32 {
        try retryingEINTR("accept") { cdistr_accept_cloexec(fd) }
    }

    /// Connects to `host:port`, trying each resolved address until one answers, within `timeout`
    /// seconds in all. Returns a blocking socket with TCP_NODELAY and keepalive set.
    package static func connect(host: String, port: Int, timeout: Double) throws(SocketError) -> Int32 {
        let addresses = try SocketAddress.resolve(host: host, port: port)
        let deadline = Clock.now + timeout
        var lastError = SocketError.timedOut(address: "\(host):\(port)", seconds: timeout)
        for address in addresses {
            do {
                let fd = try connect(address, deadline: deadline, timeout: timeout)
                return fd
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    static func connect(_ address: SocketAddress, deadline: Double, timeout: Double) throws(SocketError) -> Int32 {
        let fd = try startConnect(address)
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        while true {
            let remaining = Int32(max(0, (deadline - Clock.now) * 1000))
            let n = poll(&pfd, 1, remaining)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                FD.close(fd)
                throw .timedOut(address: address.description, seconds: timeout)
            }
            break
        }
        try finishConnect(fd, address)
        FD.setNonblocking(fd, false)
        return fd
    }

    /// Opens a nonblocking socket and starts connecting it to `address`; the connect goes on in
    /// the kernel, and `finishConnect` tells how it ended once the socket is writable.
    /// - Throws: `SocketError.connect` when the connect failed at once (the socket is closed).
    package static func startConnect(_ address: SocketAddress) throws(SocketError) -> Int32 {
        let fd: Int32
        do { fd = try open(family: address.family) } catch { throw .system(error) }
        FD.setNonblocking(fd)
        let status = withSockaddr(address) { Glibc.connect(fd, $0, $1) }
        if status != 0 {
            let code = errno
            guard code == EINPROGRESS || code == EINTR else {
                FD.close(fd)
                throw .connect(address: address.description, SystemError("connect", errno: code))
            }
        }
        return fd
    }

    /// Whether the connect `startConnect` began on `fd` succeeded, once `fd` is writable; sets
    /// TCP_NODELAY and keepalive on success. The socket stays nonblocking.
    /// - Throws: `SocketError.connect` with the connect's error (the socket is closed).
    package static func finishConnect(_ fd: Int32, _ address: SocketAddress) throws(SocketError) {
        var soError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
        if soError != 0 {
            FD.close(fd)
            throw .connect(address: address.description, SystemError("connect", errno: soError))
        }
        configure(fd)
    }

    /// TCP_NODELAY (frames are written whole) and keepalive, so a vanished peer is noticed in
    /// about ten seconds even when no FIN arrives.
    package static func configure(_ fd: Int32) {
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        _ = cdistr_set_keepalive(fd, 4, 2, 3)
    }

    /// `TCP_USER_TIMEOUT`: data sent but not acknowledged for `seconds` fails the connection
    /// (the next read or write returns ETIMEDOUT), so a full send buffer towards a peer that
    /// froze or was cut off cannot block a writer for the minutes TCP retransmits otherwise.
    package static func setUserTimeout(_ fd: Int32, seconds: Double) {
        var milliseconds = UInt32(max(1, min(Double(UInt32.max), (seconds * 1000).rounded(.up))))
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, &milliseconds, socklen_t(MemoryLayout<UInt32>.size))
    }

    /// `TCP_NOTSENT_LOWAT`: a write blocks while more than `bytes` of it wait in the kernel
    /// unsent. Bytes in flight are not counted, so throughput is kept, but a message written
    /// after a bulk transfer (a cancel after file data) queues behind at most `bytes`, not
    /// behind the megabytes of an autotuned send buffer draining over a slow link.
    package static func setUnsentLimit(_ fd: Int32, bytes: Int) {
        var value = UInt32(clamping: max(1, bytes))
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NOTSENT_LOWAT, &value, socklen_t(MemoryLayout<UInt32>.size))
    }

    /// `TCP_CORK`: while on, partial segments are held back, so a frame written in several
    /// calls (a header, pieces sent from files, a MAC) leaves in full segments; turning it off
    /// sends what is held.
    package static func setCorked(_ fd: Int32, _ on: Bool) {
        var value: Int32 = on ? 1 : 0
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_CORK, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Whether the peer has shut down its sending side or the connection failed, without reading
    /// (data waiting to be read does not hide it). The corresponding C call is `poll` with
    /// `POLLRDHUP` and no wait.
    package static func peerHasClosed(_ fd: Int32) -> Bool {
        // POLLRDHUP is Linux's (0x2000); Glibc shows it only to _GNU_SOURCE code.
        let readHangUp: Int16 = 0x2000
        var entry = pollfd(fd: fd, events: readHangUp, revents: 0)
        guard poll(&entry, 1, 0) > 0 else { return false }
        return entry.revents & (readHangUp | Int16(POLLHUP | POLLERR)) != 0
    }

    /// Bytes that have arrived on the socket and are not read yet (0 when it cannot be told).
    /// The corresponding C call is `ioctl(FIONREAD)`.
    package static func pendingBytes(_ fd: Int32) -> Int { max(0, Int(cdistr_pending_bytes(fd))) }

    /// Bytes written to a TCP socket that the other end has not acknowledged yet; 0 when the
    /// connection is closed (reset: nothing more will be), or it cannot be told (not TCP). The
    /// corresponding C calls are `getsockopt(TCP_INFO)` and `ioctl(SIOCOUTQ)`.
    package static func unacknowledgedBytes(_ fd: Int32) -> Int { max(0, Int(cdistr_unacknowledged_bytes(fd))) }

    /// Sets a receive timeout so that a stalled peer cannot hold a blocking read forever.
    package static func setReceiveTimeout(_ fd: Int32, seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// Monotonic time in seconds.
package enum Clock {
    package static var now: Double { seconds(CLOCK_MONOTONIC) }

    /// The time of `clock` in seconds. The corresponding C function is `clock_gettime`.
    package static func seconds(_ clock: clockid_t) -> Double {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Wall-clock time in nanoseconds since the epoch (for output stamps).
    package static var wallNanoseconds: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
