import Synchronization

/// Reads incoming connections that no receiving task is reading: one thread per rank, blocked in
/// `epoll_wait`, drains whatever arrives into the mailbox (which resumes parked receives). A task
/// that reads a plain socket directly takes it out of the epoll set first (silences it), so the
/// thread is not woken for data the task is about to take.
///
/// A plain socket a task silenced stays silenced after the task got its message: silencing and
/// re-arming cost a system call each, on every receive of a ping-pong. While any is silenced
/// this thread wakes now and then (`Tick`) and re-arms those no task has read since its last
/// look, so that a rank busy elsewhere still has its incoming data read (buffered sends); a
/// receive that parks re-arms them at once (`armSilenced`).
final class ProgressThread: Sendable {
    /// How long this thread waits between looks at the silenced sockets: 1 ms after a look that
    /// re-armed one (or the first), twice as long after each look that found every one read
    /// since the last, up to 16 ms. A wake-up takes a core from a spinning receive on a machine
    /// whose ranks fill the cores (2% of an 8 B ping-pong's time across workers at one per
    /// millisecond); a rank that stops receiving has its sockets read again within 16 ms.
    struct Tick: Equatable {
        static let shortest: Int32 = 1
        static let longest: Int32 = 16
        private(set) var milliseconds = Tick.shortest

        /// After a look that re-armed `rearmed` sockets and left `silenced` silenced.
        mutating func looked(rearmed: Int, silenced: Int) {
            milliseconds = rearmed > 0 || silenced == 0 ? Self.shortest : min(milliseconds * 2, Self.longest)
        }
    }

    let epoll: Epoll
    let mailbox: Mailbox
    /// How long receives on this rank's plain sockets spin before they sleep.
    let socketSpin = SocketSpin()
    private let channels = Mutex<[Int32: IncomingChannel]>([:])
    /// Socket channels silenced by receiving tasks, and how many.
    private let silenced = Mutex<[Int32: IncomingChannel]>([:])
    let silencedCount = Atomic<Int>(0)
    /// True while this thread waits with the tick's timeout (false: it may sleep for good).
    private let ticking = Atomic<Bool>(false)
    /// A byte on this pipe wakes the thread out of an endless wait to start ticking.
    private let kickRead: FileDescriptor
    private let kickWrite: FileDescriptor
    private let kicked = Atomic<Bool>(false)

    /// - Throws: `SystemError` when the epoll instance or its pipe cannot be made (out of descriptors).
    init(mailbox: Mailbox) throws(SystemError) {
        self.mailbox = mailbox
        epoll = try Epoll()
        let pipe = try FD.pipe()
        kickRead = FileDescriptor(adopting: pipe.read)
        kickWrite = FileDescriptor(adopting: pipe.write)
        FD.setNonblocking(pipe.read)
        FD.setNonblocking(pipe.write)
        try epoll.add(pipe.read)
        let threadBody: @Sendable () -> Void = { [self] in run() }
        Threads.start(name: "distr-progress", threadBody)
    }

    func add(_ channel: IncomingChannel) {
        // Watched before a receive can find it in the table: a receive that silences it takes it
        // out of the set again, and a second registration would fail.
        do { try epoll.add(channel.fd) } catch {
            // Only a kernel limit (max_user_watches, memory) fails here. Unwatched, the channel
            // would be read only by receives that happen to spin on it: end the job loudly
            // instead of letting a receive hang.
            mailbox.abort("cannot watch the connection from rank \(channel.source): \(error)")
        }
        channels.withLock { $0[channel.fd] = channel }
        // This thread may be asleep already: ask the ring's sender for the doorbell now, and take
        // what it wrote before it could know to ring.
        if channel.prepareToSleep(), case .closed = channel.drain(into: mailbox) { remove(channel) }
    }

    /// A receiving task starts (`armed` false) or stops reading `channel` itself. A plain socket
    /// is silenced on the first start and re-armed later: by this thread's tick, by `armSilenced`
    /// (a receive that parks), or by the last reader's stop when a receive is parked.
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
        if !armed {
            channel.watch.withLock { watch in
                watch.readers += 1
                watch.uses &+= 1
                // `closed` is looked at under the watch, which `remove` (run after `closed` is set)
                // takes too: a channel that closed meanwhile is not left silenced for good.
                guard !watch.silenced, !channel.closed else { return }
                // Out of the set, not only without events: a registered socket's wait queue entry
                // runs epoll's callback at every arrival and every acknowledgement.
                try? epoll.remove(channel.fd)  // Fails only when the channel was removed meanwhile (it closed).
                watch.silenced = true
                silenced.withLock { $0[channel.fd] = channel }
                silencedCount.add(1, ordering: .sequentiallyConsistent)
            }
            return
        }
        channel.watch.withLock { watch in
            watch.readers -= 1
            // A receive that parked while this one read the socket needs this thread to read it
            // now, not at its next tick. (A parking receive registers before it re-arms what
            // no one reads: either it sees no reader here, or this sees it waiting.)
            if watch.readers == 0, watch.silenced, mailbox.waiterCount > 0 { rearm(channel, &watch) }
        }
        // This thread may be asleep for good (it saw nothing silenced): wake it to tick.
        if !ticking.load(ordering: .sequentiallyConsistent) && !kicked.exchange(true, ordering: .acquiringAndReleasing) {
            var byte: UInt8 = 1
            _ = withUnsafeBytes(of: &byte) { try? FD.writeNonblocking(kickWrite.rawValue, $0) }  // Full: a kick is already waiting.
        }
    }

    /// Re-arms every silenced socket no task is reading (before a receive parks, which needs
    /// this thread to read for it). `onlyIdle`: only those unread since the last look (the tick).
    /// Returns how many it re-armed.
    @discardableResult
    func armSilenced(onlyIdle: Bool = false) -> Int {
        guard silencedCount.load(ordering: .sequentiallyConsistent) > 0 else { return 0 }
        var rearmed = 0
        for channel in silenced.withLock({ Array($0.values) }) {
            channel.watch.withLock { watch in
                let unchanged = watch.uses == watch.usesSeen
                watch.usesSeen = watch.uses
                guard watch.silenced, watch.readers == 0, unchanged || !onlyIdle else { return }
                rearm(channel, &watch)
                rearmed += 1
            }
        }
        return rearmed
    }

    /// Puts a silenced socket back into the epoll set (called holding its watch); a channel that
    /// closed is only forgotten (`remove`, which follows its close, takes it out of the set).
    private func rearm(_ channel: IncomingChannel, _ watch: inout IncomingChannel.Watch) {
        if !channel.closed {
            do throws(SystemError) {
                try epoll.add(channel.fd)
            } catch {
                // `.exists`: watched already (only if a channel was silenced before `add`
                // registered it, which `add`'s order rules out). Otherwise, as in `add`, a
                // kernel limit: an unwatched channel would leave a parked receive waiting for good.
                if error.code != .exists {
                    mailbox.abort("cannot watch the connection from rank \(channel.source) again: \(error)")
                }
            }
        }
        unsilence(channel, &watch)
    }

    /// Forgets that `channel` is silenced (called holding its watch).
    private func unsilence(_ channel: IncomingChannel, _ watch: inout IncomingChannel.Watch) {
        guard watch.silenced else { return }
        watch.silenced = false
        silenced.withLock { _ = $0.removeValue(forKey: channel.fd) }
        silencedCount.subtract(1, ordering: .sequentiallyConsistent)
    }

    /// Channels from `source` (all when nil).
    func channels(from source: Int?) -> [IncomingChannel] {
        channels.withLock { table in table.values.filter { source == nil || $0.source == source } }
    }

    /// The channel from `source` when it is the only one (the common case of a receive from a
    /// given rank: no array is made).
    func onlyChannel(from source: Int) -> IncomingChannel? {
        channels.withLock { table in
            var found: IncomingChannel?
            for channel in table.values where channel.source == source {
                guard found == nil else { return nil }
                found = channel
            }
            return found
        }
    }

    func remove(_ channel: IncomingChannel) {
        // Under the watch, as every silencing and re-arming: a re-arm cannot add the socket back
        // after this took it out.
        channel.watch.withLock { watch in
            try? epoll.remove(channel.fd)  // Fails when it is out already (silenced, or a receive and this thread both saw the close).
            unsilence(channel, &watch)
        }
        channels.withLock { _ = $0.removeValue(forKey: channel.fd) }
    }

    private func run() {
        var ready = [Int32](repeating: -1, count: 64)
        var tick = Tick()
        while true {
            // Rings ring the doorbell only when asked (by a receive that parks, or by this
            // thread's own drain after taking a doorbell), or when full: see `Node.envelope`.
            // Tick while sockets are silenced. Stop only after saying so and looking once more:
            // a task that silenced one meanwhile then sees `ticking` false and kicks.
            var timeout = tick.milliseconds
            if silencedCount.load(ordering: .sequentiallyConsistent) == 0 {
                ticking.store(false, ordering: .sequentiallyConsistent)
                if silencedCount.load(ordering: .sequentiallyConsistent) == 0 { timeout = -1 }
            }
            ticking.store(timeout >= 0, ordering: .sequentiallyConsistent)
            let n: Int
            do { n = try epoll.wait(into: &ready, timeout: timeout) } catch {
                // Only a broken epoll descriptor fails here (EINTR is retried): receives then
                // fail instead of waiting for a thread that no longer reads.
                mailbox.abort("the progress thread stopped: \(error)")
                return
            }
            for fd in ready.prefix(n) {
                if fd == kickRead.rawValue {
                    kicked.store(false, ordering: .sequentiallyConsistent)
                    var bytes = (0, 0, 0, 0, 0, 0, 0, 0)
                    _ = withUnsafeMutableBytes(of: &bytes) { try? FD.readNonblocking(kickRead.rawValue, into: $0) }  // Only empties the pipe.
                    continue
                }
                guard let channel = channels.withLock({ $0[fd] }) else { continue }
                if case .closed = channel.drain(into: mailbox) { remove(channel) }
            }
            let rearmed = armSilenced(onlyIdle: true)
            tick.looked(rearmed: rearmed, silenced: silencedCount.load(ordering: .sequentiallyConsistent))
        }
    }
}
