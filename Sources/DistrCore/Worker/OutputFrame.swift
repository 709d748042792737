/// `.output` control frames built in place around a batch of rank output (see `LineBuffer`
/// and `Connection.sendInPlace`): the bytes read from a rank's pipe are sealed and written
/// where they were read, not copied into a message and again into a frame. The payload is laid
/// out exactly as `ControlMessage.output` encodes it: rank (i64), stream (u8), timestamp
/// (u64, ns since the epoch), then the bytes.
enum OutputFrame {
    /// Payload bytes before the output: rank, stream, timestamp.
    static let payloadHeader = 17
    /// Room before the output: the frame header, then the payload header.
    static let headroom = FrameDecoder.headerSize + payloadHeader
    /// Room after the output: the MAC.
    static let tailroom = FrameDecoder.macSize
    /// The frame type of `.output`.
    static let type = ControlMessage.output(rank: 0, stream: 1, timestamp: 0, bytes: []).type

    /// Writes the payload header into `frame` (which starts with the frame header's room).
    static func writeHeader(into frame: UnsafeMutableRawBufferPointer, rank: Int, stream: UInt8, timestamp: UInt64) {
        var header = ByteWriter(capacity: payloadHeader)
        header.int(rank)
        header.u8(stream)
        header.u64(timestamp)
        header.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: frame[FrameDecoder.headerSize..<headroom]).copyMemory(from: $0) }
    }

    /// Seals and sends one batch: `frame` as `LineBuffer.take` hands it, `count` output bytes.
    /// - Throws: `SystemError` when the connection is broken.
    static func send(
        _ frame: UnsafeMutableRawBufferPointer, count: Int, rank: Int, stream: UInt8, timestamp: UInt64, over connection: Connection
    ) throws(SystemError) {
        writeHeader(into: frame, rank: rank, stream: stream, timestamp: timestamp)
        try connection.sendInPlace(type: type, frame: frame, payloadCount: payloadHeader + count)
    }
}
