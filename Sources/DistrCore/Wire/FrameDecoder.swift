/// One frame as it came off the wire, before its MAC is checked.
package struct RawFrame: Equatable, Sendable {
    package var type: UInt8
    package var payload: [UInt8]
    package var mac: [UInt8]
}

/// Splits a byte stream into frames: `u32 length | u8 type | payload | 16-byte MAC`.
/// Pure and socket-free: feed it whatever `read` returned, take frames out. The declared length
/// is checked against `maxPayload` before anything is allocated for it.
package struct FrameDecoder: Sendable {
    package static let headerSize = 5
    package static let macSize = 16
    package let maxPayload: Int
    private var buffer: [UInt8] = []
    private var start = 0

    package init(maxPayload: Int) { self.maxPayload = maxPayload }

    package var bufferedBytes: Int { buffer.count - start }

    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    package mutating func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// The next whole frame, or nil when more bytes are needed.
    /// - Throws: `WireError.frameTooLarge` when the header announces more than `maxPayload`.
    package mutating func next() throws(WireError) -> RawFrame? {
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
