import Synchronization

/// The description of a large numeric array sent as an offer (frame kind 3): the receiver reads
/// the bytes straight out of the sender's memory (`process_vm_readv`) and answers on
/// `Node.offerReplyTag`. The payload of the frame, all big-endian:
///
/// ```
/// 0  u64  id                the sender's number for this offer (one sequence per sender)
/// 8  i32  pid               the sender's process
/// 12 u32  reserved          0
/// 16 u64  address           where the array's bytes start in the sender's memory
/// 24 u64  byteCount         how many bytes (a whole number of elements)
/// 32 u64  identity          `ProcessMemory.identity` of the sender: checked before reading
/// 40 u64  identityAddress   where that word lies in the sender's memory
/// ```
struct OfferedSend: Sendable, Equatable {
    static let wireSize = 48

    var id: UInt64
    var memory: MemoryOffer

    init(id: UInt64, memory: MemoryOffer) {
        self.id = id
        self.memory = memory
    }

    var encoded: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.wireSize) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: id.bigEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: memory.pid.bigEndian, toByteOffset: 8, as: Int32.self)
            raw.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
            raw.storeBytes(of: memory.address.bigEndian, toByteOffset: 16, as: UInt64.self)
            raw.storeBytes(of: UInt64(memory.byteCount).bigEndian, toByteOffset: 24, as: UInt64.self)
            raw.storeBytes(of: memory.identity.bigEndian, toByteOffset: 32, as: UInt64.self)
            raw.storeBytes(of: memory.identityAddress.bigEndian, toByteOffset: 40, as: UInt64.self)
            initialized = Self.wireSize
        }
    }

    /// Reads and checks an offer's payload: a plausible process, address range and size (a
    /// whole number of `element` elements, at most `limit` bytes).
    /// - Throws: `NodeError.badFrame` naming `rank`.
    init(decoding payload: [UInt8], element: UInt8, from rank: Int, limit: Int) throws(NodeError) {
        func bad(_ detail: String) -> NodeError { .badFrame(rank: rank, detail: "an offer \(detail)") }
        guard payload.count == Self.wireSize, let elementSize = RawNumericTypes.elementSize(code: element) else {
            throw bad("of \(payload.count) bytes, element code \(element)")
        }
        let fields = payload.withUnsafeBytes { raw in
            (
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                Int32(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: Int32.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 32, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 40, as: UInt64.self))
            )
        }
        let (id, pid, address, byteCount, identity, identityAddress) = fields
        guard pid > 0 else { throw bad("of process \(pid)") }
        guard byteCount > 0, byteCount <= UInt64(limit), byteCount % UInt64(elementSize) == 0 else {
            throw bad("of \(byteCount) bytes (not a whole number of \(elementSize)-byte elements, or over the limit of \(limit))")
        }
        let (end, overflow) = address.addingReportingOverflow(byteCount)
        guard address != 0, !overflow, end <= UInt64(Int.max) else { throw bad("at an impossible address (\(address), \(byteCount) bytes)") }
        self.id = id
        memory = MemoryOffer(
            pid: pid, address: address, byteCount: Int(byteCount), elementCode: element, identity: identity, identityAddress: identityAddress)
    }
}

/// What a receiver answers to an offer (`Node.offerReplyTag`): where the sender is to write the
/// array (`destination`, memory of the receiver's, in huge pages where it could have them), or
/// nil to have it sent as a message. Either way the sender then sends on `Node.resendTag(id)`:
/// an empty raw-bytes frame once it has written, or the array.
struct OfferReply: Codable, Sendable {
    var id: UInt64
    var destination: MemoryOffer?
}

/// The arrays this rank has offered and not yet had answered, by receiving rank. Each array is
/// kept (a reference to its storage) until its answer comes, so its bytes stay where the offer
/// says, whatever the caller does with its own copy (a change makes the caller's copy unique).
final class OfferedSends: Sendable {
    /// At most this many arrays wait for an answer, and at most `maxBytes` bytes: a send beyond
    /// goes the usual way (through the ring).
    static let maxOffers = 64
    static let maxBytes = 1 << 30

    struct State {
        var nextID: UInt64 = 1
        var waiting: [Int: [UInt64: any RawNumericArray]] = [:]
        var count = 0
        var bytes = 0
        /// Ranks whose answers a task is reading.
        var reading: Set<Int> = []
        /// Arrays being written into their receiver's memory now.
        var writing = 0
        /// Set by `takeAll` (`leave()`): no offer is made from then on, since nothing would
        /// resend its array before the process exits (a `send` after `leave()` fails anyway).
        var closed = false
    }

    private let state = Mutex(State())

    func hasRoom(for byteCount: Int) -> Bool {
        state.withLock { !$0.closed && $0.count < Self.maxOffers && $0.bytes + byteCount <= Self.maxBytes }
    }

    /// Keeps `array` until `rank` answers; nil when the bound is reached. `startReader` is true
    /// when no task reads `rank`'s answers yet (the caller starts one).
    func keep(_ array: any RawNumericArray, byteCount: Int, for rank: Int) -> (id: UInt64, startReader: Bool)? {
        state.withLock { s in
            guard !s.closed, s.count < Self.maxOffers, s.bytes + byteCount <= Self.maxBytes else { return nil }
            let id = s.nextID
            s.nextID += 1
            s.waiting[rank, default: [:]][id] = array
            s.count += 1
            s.bytes += byteCount
            return (id, s.reading.insert(rank).inserted)
        }
    }

    /// The array offered to `rank` as `id`, no longer kept (nil: answered already, or resent).
    func release(_ id: UInt64, of rank: Int) -> (any RawNumericArray)? {
        state.withLock { Self.remove(id, of: rank, from: &$0) }
    }

    private static func remove(_ id: UInt64, of rank: Int, from s: inout State) -> (any RawNumericArray)? {
        guard let array = s.waiting[rank]?.removeValue(forKey: id) else { return nil }
        s.count -= 1
        s.bytes -= array.rawByteCount
        return array
    }

    /// Like `release`, for an array about to be written or sent: counted until `endWrite`, so
    /// that `leave()` waits for it.
    func beginWrite(_ id: UInt64, of rank: Int) -> (any RawNumericArray)? {
        state.withLock { s in
            guard let array = Self.remove(id, of: rank, from: &s) else { return nil }
            s.writing += 1
            return array
        }
    }

    func endWrite() { state.withLock { $0.writing -= 1 } }

    var isWriting: Bool { state.withLock { $0.writing > 0 } }

    /// Whether the task reading `rank`'s answers should stop: nothing offered to it waits. It
    /// is then no longer counted as reading (the next offer starts another).
    func readerShouldStop(for rank: Int) -> Bool {
        state.withLock { s in
            guard s.waiting[rank]?.isEmpty ?? true else { return false }
            s.reading.remove(rank)
            return true
        }
    }

    /// Forgets every array offered to `rank` (it has gone) and stops counting its reader.
    func forget(_ rank: Int) {
        state.withLock { s in
            for array in (s.waiting.removeValue(forKey: rank) ?? [:]).values {
                s.count -= 1
                s.bytes -= array.rawByteCount
            }
            s.reading.remove(rank)
        }
    }

    /// Takes every array still waiting for an answer, in the order offered to each rank, and
    /// takes no more (`keep` returns nil from now on).
    func takeAll() -> [(rank: Int, id: UInt64, array: any RawNumericArray)] {
        state.withLock { s in
            s.closed = true
            var out: [(rank: Int, id: UInt64, array: any RawNumericArray)] = []
            for (rank, arrays) in s.waiting {
                for (id, array) in arrays.sorted(by: { $0.key < $1.key }) { out.append((rank, id, array)) }
            }
            s.waiting = [:]
            s.count = 0
            s.bytes = 0
            return out
        }
    }
}

/// Memory this process offered to another (or handed out as a destination) and then stopped
/// waiting on, its exchange ended by an error: another process may still be copying from or into
/// it, so it is kept for the life of the process, never freed or reused. It grows only on a
/// failed exchange (a peer gone, the job aborted), each ending in an error the program sees: a
/// receive by at most `OfferedSends.maxOffers` arrays per sender (the offers its mailbox can
/// hold), a broadcast or allReduce by its own arrays.
enum ParkedMemory {
    private static let kept = Mutex<[any Sendable]>([])

    static func keep(_ memory: any Sendable) {
        kept.withLock { $0.append(memory) }
    }

    /// How many are kept (for tests).
    static var count: Int { kept.withLock { $0.count } }
}
