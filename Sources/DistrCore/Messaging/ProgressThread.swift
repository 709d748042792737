import Synchronization

/// Reads incoming connections that no receiving task is reading: one thread per rank, blocked in
/// `epoll_wait`, drains whatever arrives into the mailbox (which resumes parked receives). A task
/// that reads a channel directly disarms it here first, so the thread is not woken for data the
/// task is about to take.
final class ProgressThread: Sendable {
    let epoll: Epoll
    let mailbox: Mailbox
    private let channels = Mutex<[Int32: IncomingChannel]>([:])

    /// - Throws: `SystemError` when the epoll instance cannot be made (out of descriptors).
    init(mailbox: Mailbox) throws(SystemError) {
        self.mailbox = mailbox
        epoll = try Epoll()
        let threadBody: @Sendable () -> Void = { [self] in run() }
        Threads.start(name: "distr-progress", threadBody)
    }

    func add(_ channel: IncomingChannel) {
        channels.withLock { $0[channel.fd] = channel }
        do { try epoll.add(channel.fd) } catch {
            // Only a kernel limit (max_user_watches, memory) fails here. Unwatched, the channel
            // would be read only by receives that happen to spin on it: end the job loudly
            // instead of letting a receive hang.
            mailbox.abort("cannot watch the connection from rank \(channel.source): \(error)")
        }
        // This thread may be asleep already: ask the ring's sender for the doorbell now, and take
        // what it wrote before it could know to ring.
        if channel.prepareToSleep(), case .closed = channel.drain(into: mailbox) { remove(channel) }
    }

    func arm(_ channel: IncomingChannel, _ armed: Bool) {
        guard !channel.closed else { return }
        if channel.hasRing {
            // The socket stays watched (its end of stream); the ring's doorbell is what is silenced.
            if armed {
                if case .closed = channel.endSpin(into: mailbox) { remove(channel) }
            } else {
                channel.beginSpin()
            }
            return
        }
        try? epoll.setArmed(channel.fd, armed)  // Fails only when the channel was removed meanwhile (it closed).
    }

    /// Channels from `source` (all when nil).
    func channels(from source: Int?) -> [IncomingChannel] {
        channels.withLock { table in table.values.filter { source == nil || $0.source == source } }
    }

    func remove(_ channel: IncomingChannel) {
        try? epoll.remove(channel.fd)  // Fails only when already removed (a receive and this thread both saw it close).
        channels.withLock { _ = $0.removeValue(forKey: channel.fd) }
    }

    private func run() {
        var ready = [Int32](repeating: -1, count: 64)
        while true {
            // Rings ring the doorbell only when asked (by a receive that parks, or by this
            // thread's own drain after taking a doorbell), or when full: see `Node.envelope`.
            let n: Int
            do { n = try epoll.wait(into: &ready) } catch {
                // Only a broken epoll descriptor fails here (EINTR is retried): receives then
                // fail instead of waiting for a thread that no longer reads.
                mailbox.abort("the progress thread stopped: \(error)")
                return
            }
            for fd in ready.prefix(n) {
                guard let channel = channels.withLock({ $0[fd] }) else { continue }
                if case .closed = channel.drain(into: mailbox) { remove(channel) }
            }
        }
    }
}
