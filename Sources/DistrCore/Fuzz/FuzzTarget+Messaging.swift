/// Targets for what ranks send each other: binary Codable payloads and rank frame headers.
extension FuzzTarget {
    /// Decodes one of a fixed set of types (chosen by the first byte); whatever decodes must
    /// encode, decode and encode again to the same bytes (bytes, not values: NaN != NaN).
    static func binaryCodable(_ data: [UInt8]) {
        guard let selector = data.first else { return }
        let payload = Array(data.dropFirst())
        switch selector % 5 {
        case 0: roundTrip(String.self, payload)
        case 1: roundTrip([Int].self, payload)
        case 2: roundTrip([Double].self, payload)
        case 3: roundTripRecord(payload)
        default: roundTrip(FuzzTree.self, payload)
        }
    }

    static func roundTrip<T: Codable>(_ type: T.Type, _ payload: [UInt8]) {
        guard let value = try? BinaryDecoder().decode(type, from: payload) else { return }  // Most fuzz input is expected not to decode.
        let encoded = try? BinaryEncoder().encode(value)  // A failure is a finding: checked below.
        let again = encoded.flatMap { try? BinaryDecoder().decode(type, from: $0) }  // As above.
        let reencoded = again.flatMap { try? BinaryEncoder().encode($0) }  // As above.
        fuzzCheck(encoded != nil && encoded == reencoded, "\(T.self) does not survive re-encoding: \(value)")
    }

    /// As `roundTrip`, with the record's dictionary compared as sorted entries: two equal
    /// dictionaries whose keys collided may list them in different orders (the order they were
    /// inserted in), so their encodings may differ while their contents do not.
    static func roundTripRecord(_ payload: [UInt8]) {
        guard let value = try? BinaryDecoder().decode(FuzzRecord.self, from: payload) else { return }  // Most fuzz input is expected not to decode.
        let encoded = try? BinaryEncoder().encode(value)  // A failure is a finding: checked below.
        let again = encoded.flatMap { try? BinaryDecoder().decode(FuzzRecord.self, from: $0) }  // As above.
        func canonical(_ record: FuzzRecord) -> (fields: [UInt8]?, table: [String: Int]) {
            var fields = record
            fields.table = [:]
            return (try? BinaryEncoder().encode(fields), record.table)  // As above: nil fails the check.
        }
        let before = canonical(value)
        let after = again.map(canonical)
        fuzzCheck(
            encoded != nil && before.fields != nil && after?.fields == before.fields && after?.table == before.table,
            "FuzzRecord does not survive re-encoding: \(value)")
    }

    /// Rank frames, split into chunks as `PeerInputFuzzing.decodeRankFrames` does: the pure,
    /// size-capped decoder must only return or throw.
    static func rankFrame(_ data: [UInt8]) {
        _ = try? PeerInputFuzzing.decodeRankFrames(data)  // Malformed streams are expected to throw; only a crash or a hang is a finding.
    }
}

extension FuzzTarget {
    /// A script run against a 4 KiB shared ring whose other side is hostile: each step is a u8
    /// operation (mod 8) and its operand: 0 write n bytes (u16 n), 1 read up to n bytes (u16 n),
    /// 2 overwrite the writer's head, 3 overwrite the reader's tail (u64 each), 4, 5, 6 overwrite
    /// the flag `receiverSleeping`, `senderSleeping`, `receiverWaiting` (u32 each), 7 both sides
    /// ask to be woken and the reader sleeps on the ring with no time to wait. Every count must
    /// stay within the request and the capacity, a bad index must be the corrupt-ring error, and
    /// while no index was overwritten the bytes read must be the bytes written, in order (the
    /// flags are hints: no value of theirs may change a byte).
    static func sharedRing(_ data: [UInt8]) {
        let capacity = SharedRing.minimumCapacity
        let size = SharedRing.segmentSize(capacity: capacity)
        let base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { base.deallocate() }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let memory = RingMemory(base: base, capacity: capacity)
        var writer = RingWriter(memory: memory, peer: 1)
        var reader = RingReader(memory: memory, peer: 0)
        var sent: [UInt8] = []
        var received: [UInt8] = []
        var tampered = false
        var bytes = data[...]
        func operand(_ count: Int) -> UInt64? {
            guard bytes.count >= count else { return nil }
            defer { bytes = bytes.dropFirst(count) }
            return bytes.prefix(count).reduce(0) { $0 << 8 | UInt64($1) }
        }
        while let operation = bytes.popFirst() {
            switch operation % 8 {
            case 0:
                guard let n = operand(2) else { return }
                let chunk = (0..<Int(n)).map { UInt8(truncatingIfNeeded: sent.count + $0) }
                let written = chunk.withUnsafeBytes { raw in try? writer.write(raw, UnsafeRawBufferPointer(start: nil, count: 0)) }  // Checked below.
                if let written {
                    fuzzCheck(written.count <= min(Int(n), capacity), "wrote \(written.count) of \(n) into a ring of \(capacity)")
                    sent += chunk.prefix(written.count)
                } else {
                    fuzzCheck(tampered, "the writer refused an untouched ring")
                }
            case 1:
                guard let n = operand(2) else { return }
                var space = [UInt8](repeating: 0, count: Int(n))
                let read = space.withUnsafeMutableBytes { try? reader.read(into: $0) }  // Checked below.
                if let read {
                    fuzzCheck(read.count <= min(Int(n), capacity), "read \(read.count) of \(n) from a ring of \(capacity)")
                    received += space.prefix(read.count)
                } else {
                    fuzzCheck(tampered, "the reader refused an untouched ring")
                }
            case 2, 3:
                guard let value = operand(8) else { return }
                SharedWord.storeRelease(base, operation % 8 == 2 ? SharedRing.headOffset : SharedRing.tailOffset, value)
                tampered = true
            case 4, 5, 6:
                guard let value = operand(4) else { return }
                let flags = [SharedRing.receiverSleepingOffset, SharedRing.senderSleepingOffset, SharedRing.receiverWaitingOffset]
                SharedWord.store32(base, flags[Int(operation % 8) - 4], UInt32(truncatingIfNeeded: value))
            default:
                let readerSaw = try? reader.prepareToSleep()  // The corrupt-ring error once an index was overwritten.
                let writerSaw = try? writer.prepareToSleep()  // Likewise.
                fuzzCheck(tampered || (readerSaw != nil && writerSaw != nil), "a side refused an untouched ring")
                memory.sleepUntilWritten(timeout: 0)
            }
            if !tampered { fuzzCheck(sent.starts(with: received), "read bytes that were not written in that order") }
        }
    }
}

/// A struct with nested optional and array fields, for `binary-codable`.
struct FuzzRecord: Codable, Equatable, Sendable {
    struct Inner: Codable, Equatable, Sendable {
        var small: Int8
        var unsigned: UInt16
        var note: String?
    }
    var id: Int
    var label: String?
    var flag: Bool
    var values: [Int]
    var words: [String]
    var matrix: [[Double]]
    var inner: Inner?
    var inners: [Inner]
    var optionals: [Int?]
    var table: [String: Int]
}

/// A recursive enum, for `binary-codable`: decoders of recursive types need a depth limit.
indirect enum FuzzTree: Codable, Equatable, Sendable {
    case leaf(Int)
    case node(FuzzTree, FuzzTree)
    case labeled(String, FuzzTree)
    /// A short case name keeps the deep-recursion seed small (7 bytes a level).
    case box(FuzzTree)
    case empty
}
