/// One frame as it came off the wire, before its MAC is checked.
public struct RawFrame: Equatable, Sendable {
    public var type: UInt8
    public var payload: [UInt8]
    public var mac: [UInt8]
}

/// Splits a byte stream into frames: `u32 length | u8 type | payload | 16-byte MAC`.
/// Pure and socket-free: feed it whatever `read` returned, take frames out. The declared length
/// is checked against `maxPayload` before anything is allocated for it.
public struct FrameDecoder: Sendable {
    public static let headerSize = 5
    public static let macSize = 16
    public let maxPayload: Int
    private var buffer: [UInt8] = []
    private var start = 0

    public init(maxPayload: Int) { self.maxPayload = maxPayload }

    public var bufferedBytes: Int { buffer.count - start }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// The next whole frame, or nil when more bytes are needed.
    /// - Throws: `WireError.frameTooLarge` when the header announces more than `maxPayload`.
    public mutating func next() throws(WireError) -> RawFrame? {
        let available = buffer.count - start
        guard available >= Self.headerSize else { return nil }
        let length =
            Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
        guard length <= maxPayload else { throw .frameTooLarge(size: length, limit: maxPayload) }
        let total = Self.headerSize + length + Self.macSize
        guard available >= total else { return nil }
        let type = buffer[start + 4]
        let payloadStart = start + Self.headerSize
        let frame = RawFrame(
            type: type,
            payload: Array(buffer[payloadStart..<payloadStart + length]),
            mac: Array(buffer[payloadStart + length..<payloadStart + length + Self.macSize]))
        start += total
        if start > 1 << 20 && start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        return frame
    }
}
