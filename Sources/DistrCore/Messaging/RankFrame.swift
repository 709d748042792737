import Synchronization

/// The header in front of every message between ranks (docs/messages.md has the full format).
///
/// ```
/// 0  u8   kind         1 = message, 2 = goodbye (the sender called leave), 3 = offer (a
///                      numeric array to read from the sender's memory, `OfferedSend`),
///                      4 = both ways (the dialler reads its connection too), 5 = the answer
///                      to it (tag 1: taken, 0 and 2: declined); see `LinkChoice`
/// 1  u8   encoding     0 = raw bytes, 1 = DistrCore binary Codable, 2 = numeric array,
///                      3 = a pickled Python object (only Python ranks decode it)
/// 2  u8   element      element type code when encoding = 2, else 0
/// 3  u8   reserved     0
/// 4  u32  fingerprint  hash of the Swift type name, 0 = unspecified (not checked)
/// 8  i64  tag          user tags >= 0; negative tags are used by collectives
/// 16 u64  length       payload bytes that follow
/// ```
/// All header integers are big-endian; numeric payloads are little-endian raw memory.
/// `RankFrameDecoder` reads and checks headers.
struct RankFrame: Sendable, Equatable {
    static let headerSize = 24
    static let message: UInt8 = 1
    static let goodbye: UInt8 = 2
    static let offer: UInt8 = 3
    /// The first frame on a TCP connection a rank dialled, when the worker said the target
    /// answers it: "I read this connection too; you may send me your messages on it".
    static let bothWays: UInt8 = 4
    /// The target's answer to `bothWays`, the first frame it writes on that connection: tag 1,
    /// it sends on it from now on; tag 0, its own dial (which says `bothWays`) is coming; tag 2,
    /// it sends on a connection the dialler cannot take.
    static let answer: UInt8 = 5

    /// A signal frame: header only.
    static func signal(_ kind: UInt8, tag: Int = 0) -> RankFrame {
        RankFrame(kind: kind, encoding: .bytes, tag: tag, length: 0)
    }

    /// Whether this frame is one of the connection signals (`bothWays`, `answer`).
    var isSignal: Bool { kind == RankFrame.bothWays || kind == RankFrame.answer }

    enum Encoding: UInt8, Sendable {
        case bytes = 0
        case codable = 1
        case numeric = 2
        /// A Python object pickled by the `distr` Python module: a Swift rank receives the frame
        /// (the connection stays usable) and fails the receive with a type mismatch.
        case pickle = 3
    }

    var kind: UInt8 = RankFrame.message
    var encoding: Encoding
    var element: UInt8 = 0
    var fingerprint: UInt32 = 0
    var tag: Int
    var length: Int

    /// Whether the payload is a numeric array's raw memory (an offer's payload is its description).
    var holdsArray: Bool { encoding == .numeric && kind == RankFrame.message }

    /// The header's bytes, stored in place (appending field by field cost several times as much).
    func header() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.headerSize) { buffer, initialized in
            store(into: UnsafeMutableRawBufferPointer(buffer))
            initialized = Self.headerSize
        }
    }

    /// Runs `body` with the header's bytes on the stack: a send through a shared-memory ring
    /// copies them from there, with no array made (each costs an allocation and a look-up of
    /// the array storage's type metadata in the runtime).
    func withHeaderBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var bytes: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return try withUnsafeMutableBytes(of: &bytes) { raw in
            store(into: raw)
            return try body(UnsafeRawBufferPointer(raw))
        }
    }

    /// Writes the header into the first `headerSize` bytes of `raw`.
    func store(into raw: UnsafeMutableRawBufferPointer) {
        raw[0] = kind
        raw[1] = encoding.rawValue
        raw[2] = element
        raw[3] = 0
        raw.storeBytes(of: fingerprint.bigEndian, toByteOffset: 4, as: UInt32.self)
        raw.storeBytes(of: Int64(tag).bigEndian, toByteOffset: 8, as: Int64.self)
        raw.storeBytes(of: UInt64(length).bigEndian, toByteOffset: 16, as: UInt64.self)
    }

    /// FNV-1a of the fully qualified type name: a cheap check that both sides mean the same type.
    /// Computed once per type (the name is built by reflection, about 3 µs, and every Codable
    /// send and receive needs it: four times per round of a barrier).
    static func fingerprint(of type: Any.Type) -> UInt32 {
        let key = ObjectIdentifier(type)
        if let known = fingerprints.withLock({ $0[key] }) { return known }
        let hash = computeFingerprint(of: type)
        // One entry per type the program sends or receives: bounded by the program, not by peers.
        fingerprints.withLock { $0[key] = hash }
        return hash
    }

    private static let fingerprints = Mutex<[ObjectIdentifier: UInt32]>([:])

    private static func computeFingerprint(of type: Any.Type) -> UInt32 {
        var hash: UInt32 = 0x811c_9dc5
        for byte in String(reflecting: type).utf8 {
            hash ^= UInt32(byte)
            hash &*= 0x0100_0193
        }
        return hash == 0 ? 1 : hash
    }
}

/// A message that arrived, before it is decoded. Numeric arrays arrive already typed (read
/// straight into an array of the announced element type), so receiving them copies nothing.
struct Envelope: Sendable {
    var source: Int
    var frame: RankFrame
    var payload: [UInt8]
    /// The numeric array, boxed (`HeldArray`: an envelope is copied and moved on its way).
    var held: HeldArray?

    init(source: Int, frame: RankFrame, payload: [UInt8], held: HeldArray?) {
        self.source = source
        self.frame = frame
        self.payload = payload
        self.held = held
    }

    init(source: Int, frame: RankFrame, payload: [UInt8], array: (any RawNumericArray)? = nil) {
        self.init(source: source, frame: frame, payload: payload, held: array.map(HeldArray.init))
    }

    var array: (any RawNumericArray)? { held?.value }

    /// The payload bytes, whichever way they are held.
    var bytes: [UInt8] {
        guard let array else { return payload }
        if let bytes = array as? [UInt8] { return bytes }
        var out: [UInt8] = []
        array.appendRawBytes(to: &out)
        return out
    }
}
