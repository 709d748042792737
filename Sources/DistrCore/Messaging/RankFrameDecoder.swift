/// Cuts the byte stream of one rank connection into frames (docs/messages.md §3), and makes every
/// decision about them: pure and socket-free, like the control plane's `FrameDecoder`.
///
/// Bytes come in two ways. `append` copies them in (tests, fuzzing). A socket reader instead
/// lets `readIntoBuffer` hand it the decoder's free buffer space, and, when `next()` answers
/// `.needPayload`, lets `readIntoPayload` hand it the rest of a large payload's final array, so
/// that large numeric payloads are read straight into the array the receiver gets (no copy).
///
/// A header is checked before anything is allocated for its payload: the announced length
/// against `maxMessageBytes`, and the kind, encoding and element code against the ones the
/// format defines. Errors name the sending rank, `source`.
struct RankFrameDecoder {
    enum Step {
        /// A whole message: its header, and its payload either as bytes or, for numeric arrays,
        /// already typed.
        case frame(RankFrame, payload: [UInt8], array: HeldArray?)
        /// A connection signal (`RankFrame.bothWays` or `.answer`), in the one place it may come:
        /// the first frame, of the kind `signal` allows.
        case signal(RankFrame)
        /// The sender said goodbye: nothing more comes on this connection.
        case goodbye
        /// More bytes are needed: `append` them, or read them with `readIntoBuffer`.
        case needBytes
        /// The rest of a large payload is due: read it with `readIntoPayload` (or `append` it).
        case needPayload
    }

    /// A message whose payload is still arriving.
    struct Pending {
        var frame: RankFrame
        var bytes: [UInt8] = []
        var array: FillingArray?
        var filled = 0
    }

    /// A numeric payload's array while its bytes arrive, held by reference for the reason
    /// `HeldArray` gives (the decoder looks at its `Pending?` on every step), and filled in place:
    /// the decoder holds the only reference.
    final class FillingArray {
        var value: any RawNumericArray
        init(_ value: any RawNumericArray) { self.value = value }
    }

    /// The default largest payload accepted from a peer (1 GiB); `DISTR_MAX_MESSAGE_BYTES` changes it.
    static let defaultMaxMessageBytes = 1 << 30
    /// Payload still due of at least this many bytes is read directly into its array.
    static let directThreshold = 32 * 1024
    static let bufferSize = 64 * 1024
    /// A read at a frame boundary into an empty buffer takes at most this much: a frame of up to
    /// `directThreshold` bytes comes whole in one read. (With 4 KiB, a 4-32 KiB message took two
    /// reads: 1.2-1.3x the time one way across workers, docs/performance.md "Session 26".)
    static let boundaryReadSize = directThreshold + RankFrame.headerSize
    /// The same after a frame of more than `directThreshold` bytes, when the next is likely large
    /// too (a stream of arrays, a large ping-pong): the rest of a large payload then goes straight
    /// into its array (`readIntoPayload`) instead of through the buffer and a copy.
    static let boundaryReadAfterLarge = 4096

    /// The rank at the other end, named in errors.
    let source: Int
    let maxMessageBytes: Int
    /// Where arrays handed back by `recv(into:)` wait to be reused (nil: always allocate).
    let pool: BufferPool?
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var pending: Pending?
    private var saidGoodbye = false
    private var failure: NodeError?
    /// The connection signal this connection may begin with (0: none; `LinkChoice`): `bothWays`
    /// on a TCP connection another rank dialled to this one, `answer` on one this rank dialled
    /// after sending `bothWays`. Anywhere else a signal breaks the protocol.
    var signal: UInt8 = 0
    private var atFirstFrame = true
    /// The last frame's payload was over `directThreshold` bytes (`boundaryReadAfterLarge`).
    private var afterLargeFrame = false

    init(source: Int, maxMessageBytes: Int = defaultMaxMessageBytes, pool: BufferPool? = nil) {
        self.source = source
        self.maxMessageBytes = maxMessageBytes
        self.pool = pool
        buffer = [UInt8](repeating: 0, count: Self.bufferSize)
    }

    /// True between frames with nothing buffered: an end of stream here is a clean one.
    var isAtFrameBoundary: Bool { pending == nil && start == end }

    /// The next frame, or what is needed before there can be one. After a goodbye it answers
    /// `.goodbye` again; after an error it throws the same error again.
    /// - Throws: `NodeError.messageTooLarge` when a header announces more than `maxMessageBytes`,
    ///   `NodeError.badFrame` for an unknown kind, encoding or element code, or a numeric payload
    ///   that is not a whole number of elements.
    mutating func next() throws(NodeError) -> Step {
        if let failure { throw failure }
        if saidGoodbye { return .goodbye }
        if pending == nil {
            guard end - start >= RankFrame.headerSize else { return .needBytes }
            let frame: RankFrame?
            do { frame = try parseHeader() } catch {
                failure = error
                throw error
            }
            start += RankFrame.headerSize
            defer { atFirstFrame = false }
            guard let frame else {
                saidGoodbye = true
                return .goodbye
            }
            if frame.isSignal {
                guard atFirstFrame, frame.kind == signal else {
                    let error = NodeError.badFrame(
                        rank: source, detail: "a connection signal of kind \(frame.kind) where none may come (only as the first frame, in answer)")
                    failure = error
                    throw error
                }
                return .signal(frame)
            }
            afterLargeFrame = frame.length > Self.directThreshold
            // A small frame already whole in the buffer becomes its value at once, with no
            // pending payload to allocate, fill and hand over (most messages of a ping-pong).
            if frame.length <= min(end - start, Self.directThreshold) { return takeWhole(frame) }
            pending = allocate(frame)
        }
        // Take the pending frame out while working on it (put back below unless it is whole).
        // Its array is filled through the box, whose array has no second reference: no write
        // copies the payload.
        guard var current = pending else { return .needBytes }
        pending = nil
        let buffered = min(end - start, current.frame.length - current.filled)
        if buffered > 0 {
            Self.write(&current, from: buffer, range: start..<start + buffered)
            start += buffered
        }
        let due = current.frame.length - current.filled
        if due == 0 { return .frame(current.frame, payload: current.bytes, array: current.array.map { HeldArray($0.value) }) }
        pending = current
        return due >= Self.directThreshold ? .needPayload : .needBytes
    }

    /// The header at `start`, checked; nil for a goodbye.
    private func parseHeader() throws(NodeError) -> RankFrame? {
        let at = start
        let parsed = buffer.withUnsafeBytes { raw in
            Result { () throws(NodeError) in
                try Self.parseHeader(
                    UnsafeRawBufferPointer(rebasing: raw[at..<at + RankFrame.headerSize]), source: source, maxMessageBytes: maxMessageBytes)
            }
        }
        return try parsed.get()
    }

    /// The header in the first `RankFrame.headerSize` bytes of `raw`, checked as every header
    /// from `source` is (before anything is allocated for its payload); nil for a goodbye.
    static func parseHeader(_ raw: UnsafeRawBufferPointer, source: Int, maxMessageBytes: Int) throws(NodeError) -> RankFrame? {
        let (kind, rawEncoding, element) = (raw[0], raw[1], raw[2])
        let fingerprint = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let tag = Int64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: Int64.self))
        let length = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        switch kind {
        case RankFrame.message, RankFrame.offer: break
        case RankFrame.goodbye: return nil
        case RankFrame.bothWays, RankFrame.answer:
            // Header only: no payload, no encoding, and a tag that is the answer (0, 1 or 2).
            guard length == 0 else { throw .badFrame(rank: source, detail: "a connection signal of kind \(kind) with a payload of \(length) bytes") }
            guard rawEncoding == 0, element == 0, fingerprint == 0 else {
                throw .badFrame(rank: source, detail: "a connection signal of kind \(kind) with an encoding, element or fingerprint")
            }
            guard tag == 0 || (kind == RankFrame.answer && (1...2).contains(tag)) else {
                throw .badFrame(rank: source, detail: "a connection signal of kind \(kind) with the tag \(tag)")
            }
            return RankFrame.signal(kind, tag: Int(tag))
        default: throw .badFrame(rank: source, detail: "unknown frame kind \(kind)")
        }
        guard let encoding = RankFrame.Encoding(rawValue: rawEncoding) else {
            throw .badFrame(rank: source, detail: "unknown encoding \(rawEncoding)")
        }
        // Checked before anything is allocated for the payload.
        guard length <= UInt64(maxMessageBytes) else { throw .messageTooLarge(rank: source, size: length, limit: maxMessageBytes) }
        let size = Int(length)
        if kind == RankFrame.offer {
            // An offer names a numeric array by its element code; its payload is the description.
            guard encoding == .numeric, RawNumericTypes.elementSize(code: element) != nil, size == OfferedSend.wireSize else {
                throw .badFrame(rank: source, detail: "an offer frame of encoding \(rawEncoding), element \(element), \(size) bytes")
            }
        } else if encoding == .numeric {
            guard let elementSize = RawNumericTypes.elementSize(code: element) else {
                throw .badFrame(rank: source, detail: "unknown numeric element code \(element)")
            }
            guard size % elementSize == 0 else {
                throw .badFrame(rank: source, detail: "a numeric payload of \(size) bytes is not a whole number of \(elementSize)-byte elements")
            }
        }
        return RankFrame(kind: kind, encoding: encoding, element: element, fingerprint: fingerprint, tag: Int(tag), length: size)
    }

    // MARK: Feeding bytes

    /// Copies `bytes` in (the buffer grows when they do not fit).
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compact()
        let free = buffer.count - end
        if bytes.count > free { buffer.append(contentsOf: repeatElement(0, count: bytes.count - free)) }
        let offset = end
        buffer.withUnsafeMutableBytes { raw in
            UnsafeMutableRawBufferPointer(rebasing: raw[offset..<offset + bytes.count]).copyMemory(from: bytes)
        }
        end += bytes.count
    }

    mutating func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// Lets `body` write into the buffer's free space (a `read` into it; at a frame boundary at
    /// most `boundaryReadSize`, or `boundaryReadAfterLarge`); its result, when positive, is the
    /// number of bytes written. Returns that result.
    mutating func readIntoBuffer(_ body: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        compact()
        let offset = end
        let limit = pending == nil && start == end ? min(buffer.count, offset + boundaryRead) : buffer.count
        let n = buffer.withUnsafeMutableBytes { raw in body(UnsafeMutableRawBufferPointer(rebasing: raw[offset..<limit])) }
        if n > 0 { end += min(n, limit - offset) }
        return n
    }

    /// Lets `body` write the rest of the pending payload straight into its final storage; its
    /// result, when positive, is the number of bytes written. Without a pending payload this is
    /// `readIntoBuffer`.
    mutating func readIntoPayload(_ body: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        guard var current = pending, start == end else { return readIntoBuffer(body) }
        pending = nil
        defer { pending = current }
        let offset = current.filled
        let n: Int
        if let filling = current.array {
            n = filling.value.withMutableRawBytes { raw in body(UnsafeMutableRawBufferPointer(rebasing: raw[offset...])) }
        } else {
            n = current.bytes.withUnsafeMutableBytes { raw in body(UnsafeMutableRawBufferPointer(rebasing: raw[offset...])) }
        }
        if n > 0 { current.filled += min(n, current.frame.length - offset) }
        return n
    }

    /// How much a read at a frame boundary takes.
    private var boundaryRead: Int { afterLargeFrame ? Self.boundaryReadAfterLarge : Self.boundaryReadSize }

    /// Makes room at the end of the buffer, moving what is left to the front when needed.
    private mutating func compact() {
        if start == end {
            start = 0
            end = 0
        } else if end == buffer.count || start > buffer.count / 2 {
            let (s, e) = (start, end)
            buffer.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                base.copyMemory(from: base + s, byteCount: e - s)
            }
            end -= start
            start = 0
        }
    }

    // MARK: Payload storage

    /// The frame at `start`, whose whole payload is buffered, as a value; `start` moves past it.
    private mutating func takeWhole(_ frame: RankFrame) -> Step {
        let range = start..<start + frame.length
        start += frame.length
        let (payload, array) = buffer.withUnsafeBytes { raw in Self.value(of: frame, payload: UnsafeRawBufferPointer(rebasing: raw[range])) }
        return .frame(frame, payload: payload, array: array)
    }

    /// The payload of a frame (a checked header's) that is all of `bytes`, as a value: plain
    /// bytes, or a typed numeric array.
    static func value(of frame: RankFrame, payload bytes: UnsafeRawBufferPointer) -> ([UInt8], HeldArray?) {
        if frame.holdsArray, let array = RawNumericTypes.copy(code: frame.element, of: bytes) { return ([], HeldArray(array)) }
        return ([UInt8](bytes), nil)
    }

    private func allocate(_ frame: RankFrame) -> Pending {
        var pending = Pending(frame: frame)
        let count = frame.length / (RawNumericTypes.elementSize(code: frame.element) ?? 1)
        if frame.holdsArray, let recycled = pool?.take(code: frame.element, count: count) {
            pending.array = FillingArray(recycled)
        } else if frame.holdsArray, var array = RawNumericTypes.uninitialized(code: frame.element, count: count) {
            array.withMutableRawBytes { Memory.preferHugePages($0) }
            pending.array = FillingArray(array)
        } else {
            var bytes = [UInt8].uninitialized(count: frame.length)
            bytes.withMutableRawBytes { Memory.preferHugePages($0) }
            pending.bytes = bytes
        }
        return pending
    }

    private static func write(_ pending: inout Pending, from source: [UInt8], range: Range<Int>) {
        let offset = pending.filled
        source.withUnsafeBytes { raw in
            let from = UnsafeRawBufferPointer(rebasing: raw[range])
            if let filling = pending.array {
                filling.value.withMutableRawBytes {
                    UnsafeMutableRawBufferPointer(rebasing: $0[offset..<offset + from.count]).copyMemory(from: from)
                }
            } else {
                pending.bytes.withUnsafeMutableBytes {
                    UnsafeMutableRawBufferPointer(rebasing: $0[offset..<offset + from.count]).copyMemory(from: from)
                }
            }
        }
        pending.filled += range.count
    }
}
