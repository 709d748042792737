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

    /// Reads the payload header of an `.output` payload where it lies (the master's path that
    /// labels output without copying it into a message first); nil when it is too short.
    /// - Returns: the rank, stream and timestamp, and the output bytes after them.
    package static func parse(_ payload: UnsafeRawBufferPointer) -> (rank: Int, stream: UInt8, timestamp: UInt64, bytes: UnsafeRawBufferPointer)? {
        guard payload.count >= payloadHeader else { return nil }
        func u64(_ offset: Int) -> UInt64 { UInt64(bigEndian: payload.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
        return (
            Int(Int64(bitPattern: u64(0))), payload[8], u64(9), UnsafeRawBufferPointer(rebasing: payload[payloadHeader...])
        )
    }

    /// Batches at least this large go out as two frames (see `send`).
    static let splitSize = 16 * 1024

    /// Seals and sends one batch: `frame` as `LineBuffer.take` hands it, `count` output bytes.
    /// A large batch goes out as two frames, split after the line end nearest past its middle,
    /// sealed together: their MACs are computed two at a time (`FrameSealer.seal(_:_:)`), and
    /// the master checks them two at a time too. Both frames hold whole lines as the batch did.
    /// - Throws: `SystemError` when the connection is broken.
    static func send(
        _ frame: UnsafeMutableRawBufferPointer, count: Int, rank: Int, stream: UInt8, timestamp: UInt64, over connection: Connection
    ) throws(SystemError) {
        writeHeader(into: frame, rank: rank, stream: stream, timestamp: timestamp)
        let data = UnsafeRawBufferPointer(rebasing: frame[headroom..<headroom + count])
        guard count >= splitSize, let newline = Memory.firstIndex(of: 10, in: data, from: count / 2), newline + 1 < count else {
            try connection.sendInPlace(type: type, frame: frame, payloadCount: payloadHeader + count)
            return
        }
        let split = newline + 1
        // The first frame is built in place up to the split; its MAC goes in `firstMAC`. The
        // second's header (frame and payload header) is `second`, its output follows the split
        // where it lies, and its MAC goes into the tailroom after the batch.
        var firstMAC = [UInt8](repeating: 0, count: FrameDecoder.macSize)
        var second = [UInt8](repeating: 0, count: headroom)
        second.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: frame[0..<headroom])) }
        let result = firstMAC.withUnsafeMutableBytes { firstMAC in
            second.withUnsafeMutableBytes { second in
                let secondMAC = UnsafeMutableRawBufferPointer(rebasing: frame[headroom + count..<headroom + count + FrameDecoder.macSize])
                let pieces = [
                    UnsafeRawBufferPointer(rebasing: frame[0..<headroom + split]), UnsafeRawBufferPointer(firstMAC),
                    UnsafeRawBufferPointer(second),
                    UnsafeRawBufferPointer(rebasing: frame[headroom + split..<headroom + count + FrameDecoder.macSize]),
                ]
                return Result { () throws(SystemError) in
                    try connection.send(pieces: pieces) { sealer in
                        sealer.seal(
                            (
                                type, UnsafeMutableRawBufferPointer(rebasing: frame[0..<FrameDecoder.headerSize]),
                                UnsafeRawBufferPointer(rebasing: frame[FrameDecoder.headerSize..<headroom]),
                                UnsafeRawBufferPointer(rebasing: data[0..<split]), firstMAC
                            ),
                            (
                                type, UnsafeMutableRawBufferPointer(rebasing: second[0..<FrameDecoder.headerSize]),
                                UnsafeRawBufferPointer(rebasing: second[FrameDecoder.headerSize...]),
                                UnsafeRawBufferPointer(rebasing: data[split...]), secondMAC
                            ))
                    }
                }
            }
        }
        try result.get()
    }
}
