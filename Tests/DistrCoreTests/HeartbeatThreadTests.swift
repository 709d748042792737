import Glibc
import Synchronization
import Testing

@testable import DistrCore

/// `HeartbeatThread`: one thread keeps every watched connection's heartbeats, and a connection
/// that cannot take one now does not hold the others up. Real connections over socket pairs.
@Suite struct HeartbeatThreadTests {
    static let keys = SessionKeys(send: Array(repeating: 1, count: 32), receive: Array(repeating: 2, count: 32))
    static let mirrored = SessionKeys(send: keys.receive, receive: keys.send)
    /// Long enough that no watched end gives its silent peer up during a test (the interval,
    /// a quarter of it capped at 1 s, is what the tests wait for).
    static let timeout = 20.0

    /// The blocked writer's send fails when its connection is closed (EPIPE, not the signal).
    init() { Signals.ignorePipe() }

    /// A watched end and the peer that reads it.
    func pair() throws -> (watched: Connection, peer: Connection) {
        let (a, b) = try FD.socketPair()
        let watched = Connection(fd: a, peer: "peer", keys: Self.keys, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        let peer = Connection(fd: b, peer: "watched", keys: Self.mirrored, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        return (watched, peer)
    }

    /// A loopback TCP connection whose receiving end never reads, its sending end filled until
    /// it has taken nothing more for 0.2 s (the receiver's window closed), with the unsent-bytes
    /// limit distr-master sets (`TCPSocket.setUnsentLimit`), and its last unsent segment left
    /// with 10 bytes of room, as a frame that ended there leaves it (the second reader's
    /// recipe: Linux appends a small write to that segment even though the socket is full, and
    /// a 21-byte heartbeat then goes only in part). The receiving end's descriptor is returned
    /// to be closed.
    func stuckTCP() throws -> (watched: Connection, unreadEnd: Int32) {
        let (listener, address) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        defer { FD.close(listener) }
        let sending = try TCPSocket.connect(host: "127.0.0.1", port: address.port, timeout: 10)
        let unread = try TCPSocket.accept(listener)
        TCPSocket.setUnsentLimit(sending, bytes: 256 << 10)
        let chunk = [UInt8](repeating: 3, count: 64 << 10)
        try chunk.withUnsafeBytes { bytes in
            while true {
                while case .bytes = try FD.sendNonblocking(sending, bytes) {}
                if try !FD.waitWritable(sending, seconds: 0.2) { break }
            }
            // Raising the limit for a moment lets one more write in; each starts a segment.
            func sendPastTheLimit(_ count: Int) throws -> Int {
                TCPSocket.setUnsentLimit(sending, bytes: 64 << 20)
                defer { TCPSocket.setUnsentLimit(sending, bytes: 256 << 10) }
                guard case .bytes(let n) = try FD.sendNonblocking(sending, UnsafeRawBufferPointer(rebasing: bytes[0..<count])) else { return 0 }
                return n
            }
            _ = try sendPastTheLimit(1)
            guard case .bytes(let segment) = try FD.sendNonblocking(sending, bytes) else { return }
            _ = try sendPastTheLimit(1)
            _ = try FD.sendNonblocking(sending, UnsafeRawBufferPointer(rebasing: bytes[0..<max(1, segment - 10)]))
        }
        let watched = Connection(fd: sending, peer: "stuck", keys: Self.keys, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        return (watched, unread)
    }

    /// Reads frames until `count` heartbeats of `type` have come (each checked by the receiver).
    func heartbeats(_ count: Int, type: UInt8, from peer: Connection) throws {
        var seen = 0
        while seen < count {
            let frame = try peer.receive(idle: .after(60))
            #expect(frame.type == type && frame.payload.isEmpty)
            seen += 1
        }
    }

    @Test(.hangGuard) func manyWatchedConnections_shareOneThread_andEveryPeerGetsItsHeartbeats() throws {
        let heartbeats = HeartbeatThread()
        let pairs = try (0..<6).map { _ in try pair() }
        defer {
            for (watched, peer) in pairs {
                watched.close()
                peer.close()
            }
        }
        for (index, (watched, _)) in pairs.enumerated() {
            watched.watch(timeout: Self.timeout, heartbeatType: UInt8(40 + index), on: heartbeats)
        }
        #expect(heartbeats.count == 6)
        for (index, (_, peer)) in pairs.enumerated() { try self.heartbeats(2, type: UInt8(40 + index), from: peer) }
        #expect(heartbeats.threadsStarted.load(ordering: .relaxed) == 1)
    }

    /// One connection's send lock is held by a writer blocked on its full socket, another's
    /// socket is full with its lock free: neither heartbeat can go without waiting, and the
    /// third connection still gets heartbeat after heartbeat from the same thread.
    @Test(.hangGuard) func connectionsThatCannotTakeAHeartbeat_doNotHoldUpTheOthers() throws {
        let heartbeats = HeartbeatThread()
        let (locked, lockedPeer) = try pair()
        let (full, fullPeer) = try pair()
        let (healthy, healthyPeer) = try pair()
        let writerDone = Latch()
        defer {
            for connection in [locked, lockedPeer, full, fullPeer, healthy, healthyPeer] { connection.close() }
            writerDone.wait(until: .after(60))
        }
        // A frame far larger than a socket pair's buffer, which no one reads: the writer blocks
        // holding the send lock until the connection is closed.
        let writing = Latch()
        Threads.start(name: "test-blocked-send") {
            writing.open()
            _ = try? locked.send(type: 7, payload: [UInt8](repeating: 1, count: 8 << 20))  // Fails when the test closes it.
            writerDone.open()
        }
        writing.wait()
        // Filled directly until the socket takes no more; its send lock stays free.
        let filler = [UInt8](repeating: 2, count: 64 << 10)
        try filler.withUnsafeBytes { bytes in
            while case .bytes = try FD.sendNonblocking(full.fd, bytes) {}
        }
        #expect(full.sendUnlessItWaits(type: 9) == .busy)
        for connection in [locked, full, healthy] { connection.watch(timeout: Self.timeout, heartbeatType: 9, on: heartbeats) }
        try self.heartbeats(3, type: 9, from: healthyPeer)
        #expect(heartbeats.threadsStarted.load(ordering: .relaxed) == 1)
        #expect(!locked.peerHasLeft && !full.peerHasLeft, "busy connections are looked at again, not given up")
    }

    /// A watched connection its owners let go of is freed at once, not at the thread's next look
    /// (a second later: a worker running quick jobs kept hundreds of them in memory).
    @Test(.hangGuard) func aConnectionLetGoOf_isFreedAtOnce() throws {
        let heartbeats = HeartbeatThread()
        let (kept, keptPeer) = try pair()
        defer {
            kept.close()
            keptPeer.close()
        }
        kept.watch(timeout: Self.timeout, heartbeatType: 9, on: heartbeats)
        // The thread has sent the first heartbeat and sleeps until the next, due before the
        // next connection's first: nothing wakes it while that connection comes and goes.
        try self.heartbeats(1, type: 9, from: keptPeer)
        while !heartbeats.isSleeping { Threads.yield() }
        weak var released: Connection?
        do {
            let (watched, peer) = try pair()
            watched.watch(timeout: Self.timeout, heartbeatType: 9, on: heartbeats)
            released = watched
            watched.close()
            peer.close()
        }
        #expect(released == nil)
        #expect(heartbeats.threadsStarted.load(ordering: .relaxed) == 1)
    }

    /// A TCP socket that takes no more (its peer stopped reading) gets no heartbeat, however
    /// often one is tried: Linux would append a small write to the last unsent segment even
    /// then, until one went only in part and the rest blocked the process's one heartbeat
    /// thread. Before the writability check this hung (the test's guard ends it).
    @Test(.hangGuard) func aTCPSocketThatTakesNoMore_isNeverWrittenTo() throws {
        let (stuck, unread) = try stuckTCP()
        defer {
            stuck.close()
            FD.close(unread)
        }
        for _ in 0..<200 { #expect(stuck.sendUnlessItWaits(type: 9) == .busy) }
        #expect(!stuck.peerHasLeft)
    }

    /// A stuck TCP connection beside a healthy one on the same thread: the healthy one keeps
    /// its heartbeats.
    @Test(.hangGuard) func aStuckTCPConnection_doesNotHoldUpTheOthers() throws {
        let heartbeats = HeartbeatThread()
        let (stuck, unread) = try stuckTCP()
        let (healthy, healthyPeer) = try pair()
        defer {
            for connection in [stuck, healthy, healthyPeer] { connection.close() }
            FD.close(unread)
        }
        stuck.watch(timeout: Self.timeout, heartbeatType: 9, on: heartbeats)
        healthy.watch(timeout: Self.timeout, heartbeatType: 9, on: heartbeats)
        try self.heartbeats(3, type: 9, from: healthyPeer)
    }

    /// The thread ends when its last connection has ended, and a connection watched after that
    /// starts it again.
    @Test(.hangGuard) func theThreadEndsWithItsLastConnection_andStartsAgainForTheNext() throws {
        let heartbeats = HeartbeatThread()
        let (first, firstPeer) = try pair()
        first.watch(timeout: Self.timeout, heartbeatType: 9, on: heartbeats)
        try self.heartbeats(1, type: 9, from: firstPeer)
        first.close()
        firstPeer.close()
        // Dropped at the thread's next look (within the interval), after which it ends.
        while heartbeats.count > 0 { usleep(1000) }
        let (second, secondPeer) = try pair()
        defer {
            second.close()
            secondPeer.close()
        }
        second.watch(timeout: Self.timeout, heartbeatType: 9, on: heartbeats)
        try self.heartbeats(1, type: 9, from: secondPeer)
        #expect(heartbeats.threadsStarted.load(ordering: .relaxed) == 2)
    }
}
