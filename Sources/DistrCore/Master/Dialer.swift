import Dispatch
import Synchronization

/// Opens authenticated control connections to several workers at once from the calling thread:
/// every connect starts at once, and each handshake (`ClientHandshake`, which decides
/// everything) goes on as its bytes arrive, all within one deadline. A worker that answers
/// "busy" (its handshake slots are taken) is dialled again after a pause that doubles up to
/// 0.5 s, while the deadline allows.
///
/// One thread for all instead of one per worker: a job's handshakes no longer wait for threads
/// to be created and scheduled on cores that the workers and the job share, and the master
/// starts no thread before it has every connection (docs/performance.md, "Session 24").
///
/// Host names are looked up first, all at once (a thread per name; an address written out
/// needs none), and the deadline starts after the last lookup: a lookup takes as long as the
/// resolver does (its own timeouts, resolv.conf), and one slow name must not use up the time
/// the others have to connect.
enum Dialer {
    /// Dials every peer; one result per peer, in order: the connection (blocking, handshake
    /// done, watched when `watch` is given: the node timeout of its heartbeats) and the address
    /// the worker was reached at, or why it could not be.
    static func dial(_ peers: [Peer], secret: [UInt8], timeout: Double, watch: Double?) -> [Result<(Connection, String), any Error>] {
        let addresses = lookUp(peers)
        let deadline = Deadline.after(timeout)
        var attempts = zip(peers, addresses).map { Attempt(peer: $0, addresses: $1, timeout: timeout) }
        for index in attempts.indices { attempts[index].begin() }
        while attempts.contains(where: { $0.outcome == nil }) {
            let waits = attempts.map(\.wait)
            let until = attempts.compactMap(\.pauseEnd).map { Deadline(instant: $0) }.reduce(deadline) { min($0, $1) }
            let ready: [Bool]
            do { ready = try FD.waitReady(waits, until: until) } catch {
                for index in attempts.indices { attempts[index].abandon(error) }
                break
            }
            let now = Clock.now
            for index in attempts.indices where attempts[index].outcome == nil {
                if ready[index] {
                    attempts[index].advance(secret: secret, deadline: deadline)
                } else if let end = attempts[index].pauseEnd, end <= now {
                    attempts[index].begin()
                }
            }
            if deadline.hasPassed {
                for index in attempts.indices { attempts[index].timeOut() }
            }
        }
        return attempts.map { attempt in
            // Every attempt has an outcome when the loop ends.
            attempt.outcome.unsafelyUnwrapped.map { dialed in
                FD.setNonblocking(dialed.fd, false)
                let limits = Limits.default
                let connection = Connection(
                    fd: dialed.fd, peer: attempt.peer.label, keys: dialed.keys, maxPayload: limits.maxFrame,
                    headerOnlyTypes: [ControlMessage.fileDataType], frameTimeout: limits.frameTimeout)
                if let watch {
                    connection.watch(timeout: watch, heartbeatType: ControlMessage.heartbeatType)
                    // File data must not pile up unsent in the kernel: a cancel would wait behind it.
                    TCPSocket.setUnsentLimit(dialed.fd, bytes: 256 << 10)
                }
                return (connection, dialed.host)
            }
        }
    }

    /// The addresses of every peer, or why its name has none: literals at once, names each on a
    /// thread of its own, all at the same time (each distinct host and port once).
    static func lookUp(_ peers: [Peer]) -> [Result<[SocketAddress], SocketError>] {
        let found = Mutex<[String: Result<[SocketAddress], SocketError>]>([:])
        let group = DispatchGroup()
        var seen = Set<String>()
        for peer in peers where seen.insert(peer.description).inserted {
            if let literal = SocketAddress.numeric(host: peer.host, port: peer.port) {
                found.withLock { $0[peer.description] = .success(literal) }
                continue
            }
            group.enter()
            Threads.start(name: "distr-lookup") {
                defer { group.leave() }
                let result = Result { () throws(SocketError) in try SocketAddress.resolve(host: peer.host, port: peer.port) }
                found.withLock { $0[peer.description] = result }
            }
        }
        group.wait()
        let table = found.withLock { $0 }
        // Every distinct peer has its entry once the group is done.
        return peers.map { table[$0.description] ?? .failure(.resolve(host: $0.host, reason: "no answer from the lookup")) }
    }

    /// One peer's dial: its addresses tried in turn, then the handshake, or a pause after "busy".
    private struct Attempt {
        enum Phase {
            case connecting(fd: Int32, address: SocketAddress)
            case handshaking(fd: Int32, ClientHandshake, host: String)
            case pausing(until: Double)
            case finished
        }

        struct Dialed {
            var fd: Int32
            var keys: SessionKeys
            var host: String
        }

        let peer: Peer
        let timeout: Double
        let addresses: Result<[SocketAddress], SocketError>
        /// The address tried next.
        var next = 0
        var phase = Phase.finished
        var outcome: Result<Dialed, any Error>?
        var lastError: any Error
        var pause = 0.01

        init(peer: Peer, addresses: Result<[SocketAddress], SocketError>, timeout: Double) {
            self.peer = peer
            self.addresses = addresses
            self.timeout = timeout
            lastError = SocketError.timedOut(address: peer.description, seconds: timeout)
        }

        /// What to wait for: a connect's end (writable) or the server's bytes; -1 for nothing.
        var wait: (fd: Int32, writing: Bool) {
            switch phase {
            case .connecting(let fd, _): (fd, true)
            case .handshaking(let fd, _, _): (fd, false)
            case .pausing, .finished: (-1, false)
            }
        }

        var pauseEnd: Double? {
            if case .pausing(let until) = phase { return until }
            return nil
        }

        /// Starts connecting to the first address (again, after a pause).
        mutating func begin() {
            next = 0
            if case .failure(let error) = addresses {
                fail(error)
                return
            }
            connectNext()
        }

        /// Starts connecting to the next address (no socket is open); fails with the last error
        /// when none is left.
        private mutating func connectNext() {
            phase = .finished
            let addresses = (try? self.addresses.get()) ?? []  // A failed lookup never gets here (`begin`).
            while next < addresses.count {
                let address = addresses[next]
                next += 1
                do {
                    phase = .connecting(fd: try TCPSocket.startConnect(address), address: address)
                    return
                } catch {
                    lastError = error
                }
            }
            fail(lastError)
        }

        /// Moves on after `wait` said the socket is ready.
        mutating func advance(secret: [UInt8], deadline: Deadline) {
            switch phase {
            case .connecting(let fd, let address):
                do { try TCPSocket.finishConnect(fd, address) } catch {
                    // finishConnect closed the socket.
                    lastError = error
                    connectNext()
                    return
                }
                let handshake = ClientHandshake(Handshake.Client(key: secret, kind: .control))
                phase = .handshaking(fd: fd, handshake, host: TCPSocket.peerAddress(fd)?.host ?? peer.host)
                // The hello (under 100 bytes) and later the proof (32) go into a fresh socket's
                // empty send buffer: these writes never wait.
                do { try FD.writeAll(fd, handshake.hello) } catch { failHandshake(fd: fd, error) }
            case .handshaking(let fd, var handshake, let host):
                do {
                    var bytes = [UInt8](repeating: 0, count: handshake.bytesWanted)
                    let read = try bytes.withUnsafeMutableBytes { try FD.readNonblocking(fd, into: $0) }
                    switch read {
                    case .wouldBlock: return
                    case .endOfStream: throw WireError.closed
                    case .bytes(let count):
                        switch try handshake.received(bytes.prefix(count)) {
                        case .needBytes: break
                        case .send(let proof): try FD.writeAll(fd, proof)
                        case .accepted(let keys, _):
                            phase = .finished
                            outcome = .success(Dialed(fd: fd, keys: keys, host: host))
                            return
                        }
                        phase = .handshaking(fd: fd, handshake, host: host)
                    }
                } catch WireError.busy where deadline.remaining > pause {
                    // Too many connections in their handshake there: another try shortly.
                    FD.close(fd)
                    phase = .pausing(until: Clock.now + pause)
                    pause = min(pause * 2, 0.5)
                } catch {
                    failHandshake(fd: fd, error)
                }
            case .pausing, .finished:
                return
            }
        }

        /// The deadline passed: whatever is still under way fails as a blocking connect would.
        mutating func timeOut() {
            switch phase {
            case .connecting(_, let address): abandon(SocketError.timedOut(address: address.description, seconds: timeout))
            case .handshaking(let fd, _, _): failHandshake(fd: fd, WireError.stalled("the handshake was not completed in time"))
            case .pausing: fail(WireError.busy)
            case .finished: return
            }
        }

        private mutating func failHandshake(fd: Int32, _ error: any Error) {
            FD.close(fd)
            fail(Connection.clientHandshakeFailure(error, timeout: timeout))
        }

        /// Ends the attempt with `error` unless it has ended already. Closes nothing: the socket
        /// under way, if any, is the caller's to close.
        private mutating func fail(_ error: any Error) {
            guard outcome == nil else { return }
            phase = .finished
            outcome = .failure(error)
        }

        /// Ends the attempt with `error`, closing the socket under way.
        mutating func abandon(_ error: any Error) {
            if case .connecting(let fd, _) = phase { FD.close(fd) }
            if case .handshaking(let fd, _, _) = phase { FD.close(fd) }
            fail(error)
        }
    }
}
