/// Messages on the agent channel: the Unix seqpacket socket a worker gives each rank (fd 3,
/// named by `DISTR_AGENT_FD`). One packet is one message; a descriptor may ride along.
package enum AgentMessage: Sendable, Equatable {
    /// rank → worker: first message; the worker answers `welcome`.
    case hello(rank: Int)
    /// worker → rank: what the rank needs to reach the others.
    case welcome(jobID: String, jobKey: [UInt8], workerIndex: Int, placements: [RankPlacement])
    /// rank → worker: a connection to a rank on the same worker, please.
    case connectLocal(to: Int)
    /// worker → rank: here is the connection (descriptor attached) or why not (no descriptor).
    case connected(to: Int, error: String)
    /// worker → rank: another rank opened a connection to you (descriptor attached).
    case incoming(from: Int)
    /// worker → rank: a rank of the job has exited with this status code.
    case peerExited(rank: Int, status: Int32)
    /// worker → rank: the job is being ended.
    case abort(reason: String)
    /// rank → worker: first message, from a rank that can also talk over shared memory
    /// (docs/messages.md §2); the worker answers `welcome`.
    case helloSharedMemory(rank: Int)
    /// worker → rank: here is the connection to a rank on this worker, as a socket pair end and a
    /// shared-memory ring segment to write into (both descriptors attached, in that order).
    case connectedShared(to: Int)
    /// worker → rank: another rank on this worker opened a connection to you: a socket pair end
    /// and the ring segment it writes into (both descriptors attached, in that order).
    case incomingShared(from: Int)
    /// rank → worker: first message, from a rank that uses shared-memory rings and also reads
    /// memory offers in collectives (a Swift rank; docs/messages.md §5); the worker answers `welcome`.
    case helloReadingOffers(rank: Int)
    /// worker → rank: the rank named reads memory offers; sent just before the `connectedShared`
    /// that connects to it.
    case readsOffers(rank: Int)
    /// rank → worker: first message, from a rank that uses plain sockets only (a Swift rank run
    /// with `DISTR_TRANSPORT=socket`) and answers `bothWays` on connections from other workers
    /// (docs/messages.md §2, as `helloReadingOffers` implies); the worker answers `welcome`.
    case helloAnswering(rank: Int)

    package func encoded() -> [UInt8] {
        var w = ByteWriter()
        switch self {
        case .hello(let rank):
            w.u8(1)
            w.int(rank)
        case .welcome(let jobID, let key, let workerIndex, let placements):
            w.u8(2)
            w.string(jobID)
            w.data(key)
            w.int(workerIndex)
            w.u32(UInt32(placements.count))
            for p in placements {
                w.int(p.rank)
                w.string(p.host)
                w.int(p.port)
                w.int(p.worker)
                w.string(p.label)
            }
        case .connectLocal(let to):
            w.u8(3)
            w.int(to)
        case .connected(let to, let error):
            w.u8(4)
            w.int(to)
            w.string(error)
        case .incoming(let from):
            w.u8(5)
            w.int(from)
        case .peerExited(let rank, let status):
            w.u8(6)
            w.int(rank)
            w.u32(UInt32(bitPattern: status))
        case .abort(let reason):
            w.u8(7)
            w.string(reason)
        case .helloSharedMemory(let rank):
            w.u8(8)
            w.int(rank)
        case .connectedShared(let to):
            w.u8(9)
            w.int(to)
        case .incomingShared(let from):
            w.u8(10)
            w.int(from)
        case .helloReadingOffers(let rank):
            w.u8(14)
            w.int(rank)
        case .readsOffers(let rank):
            w.u8(15)
            w.int(rank)
        case .helloAnswering(let rank):
            w.u8(16)
            w.int(rank)
        }
        return w.bytes
    }

    package static func decode(_ bytes: [UInt8]) throws(WireError) -> AgentMessage {
        var r = ByteReader(bytes)
        let type = try r.u8()
        switch type {
        case 1: return .hello(rank: try r.int())
        case 2:
            let jobID = try r.string()
            let key = try r.data()
            let workerIndex = try r.int()
            var placements: [RankPlacement] = []
            for _ in 0..<(try r.count(elementSize: 32)) {
                placements.append(
                    RankPlacement(rank: try r.int(), host: try r.string(), port: try r.int(), worker: try r.int(), label: try r.string()))
            }
            return .welcome(jobID: jobID, jobKey: key, workerIndex: workerIndex, placements: placements)
        case 3: return .connectLocal(to: try r.int())
        case 4: return .connected(to: try r.int(), error: try r.string())
        case 5: return .incoming(from: try r.int())
        case 6: return .peerExited(rank: try r.int(), status: Int32(bitPattern: try r.u32()))
        case 7: return .abort(reason: try r.string())
        case 8: return .helloSharedMemory(rank: try r.int())
        case 9: return .connectedShared(to: try r.int())
        case 10: return .incomingShared(from: try r.int())
        case 14: return .helloReadingOffers(rank: try r.int())
        case 15: return .readsOffers(rank: try r.int())
        case 16: return .helloAnswering(rank: try r.int())
        default: throw .unknownMessage(type: type)
        }
    }
}

/// Sending and receiving agent messages with an optional descriptor.
package enum AgentChannel {
    package static let maxPacket = 4 << 20

    /// A connected pair of close-on-exec seqpacket sockets: (worker end, rank end).
    package static func pair() throws(SystemError) -> (Int32, Int32) {
        try UnixSocket.pair(.seqpacket)
    }

    package static func send(_ fd: Int32, _ message: AgentMessage, passing descriptor: Int32 = -1) throws(SystemError) {
        try send(fd, message, passingAll: descriptor >= 0 ? [descriptor] : [])
    }

    /// Sends `message` with every descriptor in `descriptors` attached (the caller still owns them).
    package static func send(_ fd: Int32, _ message: AgentMessage, passingAll descriptors: [Int32]) throws(SystemError) {
        let bytes = message.encoded()
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(SystemError) in try UnixSocket.send(fd, raw, passingAll: descriptors) }
        }
        try result.get()
    }

    /// The next message and the descriptors that came with it (owned by the caller); nil at end
    /// of stream.
    package static func receive(_ fd: Int32) throws -> (AgentMessage, [Int32])? {
        // Uninitialised: only the pages the packet fills are touched (packets are usually tiny,
        // but a welcome for a large job can be big).
        var buffer = [UInt8](unsafeUninitializedCapacity: maxPacket) { _, count in count = maxPacket }
        let (n, descriptors) = try buffer.withUnsafeMutableBytes { raw in
            try Result { () throws(SystemError) in try UnixSocket.receiveAll(fd, into: raw) }.get()
        }
        if n == 0 {
            for descriptor in descriptors { FD.close(descriptor) }
            return nil
        }
        do {
            return (try AgentMessage.decode(Array(buffer[0..<n])), descriptors)
        } catch {
            for descriptor in descriptors { FD.close(descriptor) }
            throw error
        }
    }
}
