@preconcurrency import Glibc
import CDistrSys
import Synchronization

/// Reads incoming connections that no receiving task is reading: one thread per rank, blocked in
/// `epoll_wait`, drains whatever arrives into the mailbox (which resumes parked receives). A task
/// that reads a channel directly disarms it here first, so the thread is not woken for data the
/// task is about to take.
final class ProgressThread: Sendable {
    let epoll: Int32
    let mailbox: Mailbox
    private let channels = Mutex<[Int32: IncomingChannel]>([:])

    init(mailbox: Mailbox) {
        self.mailbox = mailbox
        epoll = cdistr_epoll_create()
        let threadBody: @Sendable () -> Void = { [self] in run() }
        Threads.start(name: "distr-progress", threadBody)
    }

    func add(_ channel: IncomingChannel) {
        channels.withLock { $0[channel.fd] = channel }
        _ = cdistr_epoll_add(epoll, channel.fd)
    }

    func arm(_ channel: IncomingChannel, _ armed: Bool) {
        if !channel.closed { _ = cdistr_epoll_arm(epoll, channel.fd, armed ? 1 : 0) }
    }

    /// Channels from `source` (all when nil).
    func channels(from source: Int?) -> [IncomingChannel] {
        channels.withLock { table in table.values.filter { source == nil || $0.source == source } }
    }

    func remove(_ channel: IncomingChannel) {
        _ = cdistr_epoll_del(epoll, channel.fd)
        channels.withLock { _ = $0.removeValue(forKey: channel.fd) }
    }

    private func run() {
        var ready = [Int32](repeating: -1, count: 64)
        while true {
            let n = cdistr_epoll_wait(epoll, &ready, 64, -1)
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            for fd in ready.prefix(Int(n)) {
                guard let channel = channels.withLock({ $0[fd] }) else { continue }
                if case .closed = channel.drain(into: mailbox) { remove(channel) }
            }
        }
    }
}
