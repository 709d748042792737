import Synchronization

/// A watched connection's side of `HeartbeatThread`: its turn at each look, and a heartbeat
/// written only when the write cannot wait.
extension Connection {
    func watch(timeout: Double, heartbeatType: UInt8, on heartbeats: HeartbeatThread) {
        _ = usingDescriptor { TCPSocket.setUserTimeout(fd, seconds: timeout) }
        let now = Clock.now
        let state = Liveness(timeout: timeout, now: now)
        liveness.withLock { $0 = state }
        heartbeats.add(self, type: heartbeatType, firstDue: min(now + state.interval, state.deadline))
    }

    /// One look of the heartbeat thread at this connection: sends the heartbeat when it is due
    /// and the write cannot wait, breaks the connection when the peer has been silent too long.
    /// - Returns: when to look again; nil once the connection has ended (or was broken here, or
    ///   a heartbeat could not be written: the reading thread meets that failure itself).
    func heartbeatTurn(type: UInt8) -> Double? {
        if ended.isOpen { return nil }
        let pending = usingDescriptor { TCPSocket.pendingBytes(fd) } ?? 0
        guard
            let verdict = liveness.withLock({ state -> Liveness.Verdict? in
                state?.observe(pendingBytes: pending, at: Clock.now)
                return state?.check(at: Clock.now)
            })
        else { return nil }
        switch verdict {
        case .wait(let until):
            return until
        case .sendHeartbeat:
            switch sendUnlessItWaits(type: type) {
            case .sent:
                return liveness.withLock { state in
                    state?.sent(at: Clock.now)
                    return state.map { min($0.lastSent + $0.interval, $0.deadline) }
                }
            case .busy:
                // Another thread is writing, or the socket is full: those bytes go first. Looked
                // at again soon (a busy connection must not make the thread spin), and by the
                // peer's deadline at the latest.
                let deadline = liveness.withLock { $0?.deadline } ?? .infinity
                return min(Clock.now + Self.busyHeartbeatRetry, deadline)
            case .failed:
                return nil
            }
        case .expired:
            abort()
            return nil
        }
    }

    /// How soon the heartbeat thread looks again at a connection whose heartbeat could not be
    /// written without waiting.
    static let busyHeartbeatRetry = 0.05

    enum HeartbeatWrite: Equatable {
        case sent
        /// Not written: the send lock was taken, or the socket had no room.
        case busy
        /// The socket failed, or the connection is closing.
        case failed
    }

    /// Sends a frame of `type` with no payload, only if that does not wait for another sender
    /// or for room in the socket: the socket must be writable (`poll`: for TCP, a third of its
    /// buffer free and its unsent bytes under half of `TCP_NOTSENT_LOWAT`), for then a frame of
    /// a few dozen bytes goes whole. Without that check Linux appends a small write to the last
    /// unsent segment even when the socket is full, so heartbeats to a peer that stopped reading
    /// went on until one went only in part, and the rest blocked the one heartbeat thread of the
    /// process (found by a second reader, reproduced over TCP). A frame taken in part all the
    /// same gets `partialWriteWait` to go out, else the connection is broken (`abort`).
    func sendUnlessItWaits(type: UInt8) -> HeartbeatWrite {
        let outcome = sender.withLockIfAvailable { sealer -> HeartbeatWrite in
            // The sequence number is spent only on a frame that goes out.
            var sealing = sealer
            let frame = sealing.seal(type: type, payload: [])
            let result = frame.withUnsafeBytes { bytes in
                Result { () throws(SystemError) -> HeartbeatWrite? in
                    try usingDescriptor { () throws(SystemError) -> HeartbeatWrite in
                        guard try FD.waitWritable(fd, seconds: 0) else { return .busy }
                        switch try FD.sendNonblocking(fd, bytes) {
                        case .wouldBlock, .endOfStream: return .busy
                        case .bytes(let n):
                            return try Self.finish(fd, UnsafeRawBufferPointer(rebasing: bytes[n...]), within: Self.partialWriteWait)
                                ? .sent : .failed
                        }
                    }
                }
            }
            switch result {
            case .success(.sent?):
                sealer = sealing
                return .sent
            case .success(.busy?): return .busy
            case .success(.failed?), .success(nil), .failure: return .failed
            }
        }
        // A frame left half-written cannot be taken back: the stream is broken.
        if outcome == .failed { abort() }
        return outcome ?? .busy
    }

    /// How long the rest of a heartbeat the socket took only part of may take to go out.
    static let partialWriteWait = 0.05

    /// Writes `rest` (empty: nothing to do) as the socket takes it, waiting at most `seconds`.
    /// - Returns: whether all of it went.
    private static func finish(_ fd: Int32, _ rest: UnsafeRawBufferPointer, within seconds: Double) throws(SystemError) -> Bool {
        var left = rest
        let deadline = Clock.now + seconds
        while !left.isEmpty {
            if case .bytes(let n) = try FD.sendNonblocking(fd, left) {
                left = UnsafeRawBufferPointer(rebasing: left[n...])
                continue
            }
            let remaining = deadline - Clock.now
            guard remaining > 0 else { return false }
            _ = try FD.waitWritable(fd, seconds: remaining)
        }
        return true
    }
}
