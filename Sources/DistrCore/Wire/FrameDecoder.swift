/// One frame as it came off the wire, before its MAC is checked.
package struct RawFrame: Equatable, Sendable {
    package var type: UInt8
    package var payload: [UInt8]
    package var mac: [UInt8]
}

/// Where a whole frame lies in the decoder's buffer (see `FrameDecoder.nextSpan`).
package struct FrameSpan: Equatable, Sendable {
    package var type: UInt8
    /// Offset of the payload in the buffer; the MAC follows it.
    package var payloadStart: Int
    package var payloadCount: Int

    /// The payload and the MAC of this frame in `buffer` (as `FrameDecoder.withBuffer` gives it).
    package func parts(in buffer: UnsafeRawBufferPointer) -> (payload: UnsafeRawBufferPointer, mac: UnsafeRawBufferPointer) {
        let macStart = payloadStart + payloadCount
        return (
            UnsafeRawBufferPointer(rebasing: buffer[payloadStart..<macStart]),
            UnsafeRawBufferPointer(rebasing: buffer[macStart..<macStart + FrameDecoder.macSize])
        )
    }
}

/// Splits a byte stream into frames: `u32 length | u8 type | payload | 16-byte MAC`.
/// Pure and socket-free: feed it whatever `read` returned (or let `fill` read straight into its
/// buffer), take frames out. The declared length is checked against `maxPayload` before
/// anything is allocated for it.
package struct FrameDecoder: Sendable {
    package static let headerSize = 5
    package static let macSize = 16
    package let maxPayload: Int
    /// Bytes `start..<end` are received and not yet taken; the rest is free space (uninitialised
    /// past `end`: only what data reaches is touched).
    private var buffer: [UInt8] = []
    private var start = 0
    private var end = 0

    /// - Parameter capacity: the buffer's first size (uninitialised, so only the pages input
    ///   reaches are touched): a connection that reads bulk data into a large buffer moves a
    ///   partial frame to its front once per buffer's worth, not at every read.
    package init(maxPayload: Int, capacity: Int = 0) {
        self.maxPayload = maxPayload
        let size = max(0, capacity)
        buffer = [UInt8](unsafeUninitializedCapacity: size) { _, initialized in initialized = size }
    }

    package var bufferedBytes: Int { end - start }

    /// Lets `read` write into the free space after the buffered bytes (at least `minimum`
    /// bytes of it) and keeps the `n` bytes it reports. Taken bytes are dropped first when
    /// room is short, so the spans of frames taken before are invalid after a `fill`.
    package mutating func fill<E: Error>(minimum: Int, _ read: (UnsafeMutableRawBufferPointer) throws(E) -> Int) throws(E) -> Int {
        makeRoom(minimum)
        let from = end
        let result = buffer.withUnsafeMutableBytes { raw in
            Result { () throws(E) in try read(UnsafeMutableRawBufferPointer(rebasing: raw[from...])) }
        }
        let n = try result.get()
        end += max(0, n)
        return n
    }

    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        _ = fill(minimum: bytes.count) { space in
            space.copyMemory(from: bytes)
            return bytes.count
        }
    }

    package mutating func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// Ensures `count` free bytes after `end`: moves the untaken bytes to the front when that
    /// frees enough (the common case: a partial frame, moved once per buffer's worth of
    /// input), else grows the buffer.
    private mutating func makeRoom(_ count: Int) {
        if start == end { (start, end) = (0, 0) }
        guard buffer.count - end < count else { return }
        let kept = end - start
        if buffer.count - kept >= count && start > 0 {
            buffer.withUnsafeMutableBytes { raw in
                let base = raw.baseAddress.unsafelyUnwrapped  // Non-empty: start > 0.
                base.copyMemory(from: base + start, byteCount: kept)
            }
        } else {
            let size = max(kept + count, buffer.count * 2)
            let (old, from) = (buffer, start)
            buffer = [UInt8](unsafeUninitializedCapacity: size) { out, initialized in
                old.withUnsafeBytes { source in
                    UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(rebasing: source[from..<from + kept]))
                }
                initialized = size
            }
        }
        (start, end) = (0, kept)
    }

    /// The next whole frame, or nil when more bytes are needed.
    /// - Throws: `WireError.frameTooLarge` when the header announces more than `maxPayload`.
    package mutating func next() throws(WireError) -> RawFrame? {
        guard let span = try nextSpan() else { return nil }
        return withBuffer { raw in
            let (payload, mac) = span.parts(in: raw)
            return RawFrame(type: span.type, payload: Array(payload), mac: Array(mac))
        }
    }

    /// The next whole frame where it lies in the buffer, taken without copying: its bytes stay
    /// valid (through `withBuffer`) until the next `fill` or `append`.
    /// - Throws: `WireError.frameTooLarge` when the header announces more than `maxPayload`.
    package mutating func nextSpan() throws(WireError) -> FrameSpan? {
        let available = end - start
        guard available >= Self.headerSize else { return nil }
        let length =
            Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
        guard length <= maxPayload else { throw .frameTooLarge(size: length, limit: maxPayload) }
        let total = Self.headerSize + length + Self.macSize
        guard available >= total else { return nil }
        let span = FrameSpan(type: buffer[start + 4], payloadStart: start + Self.headerSize, payloadCount: length)
        start += total
        return span
    }

    /// The size of the frame that has begun but not arrived whole (header included), if its
    /// header is in: how much a read should make room for.
    package var partialFrameSize: Int? {
        guard end - start >= Self.headerSize else { return nil }
        let length =
            Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
        return Self.headerSize + min(length, maxPayload) + Self.macSize
    }

    /// Calls `body` with the buffer the spans of `nextSpan` point into.
    package func withBuffer<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeBytes { try body($0) }
    }
}
