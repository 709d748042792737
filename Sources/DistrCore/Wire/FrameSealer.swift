/// The two directional keys a handshake produces.
package struct SessionKeys: Sendable, Equatable {
    package var send: [UInt8]
    package var receive: [UInt8]
}

/// MACs outgoing frames and checks incoming ones under per-direction keys with implicit sequence
/// numbers, so a frame cannot be forged, replayed, reordered or moved to the other direction.
///
/// The MAC is HMAC-SHA256(key, seq | type | length | payload) truncated to 16 bytes. For types
/// listed in `headerOnlyTypes` (bulk file chunks) the payload is left out of the MAC: those bytes
/// are covered by the SHA-256 digest in the authenticated manifest instead, which keeps bulk
/// transfer from being bound by HMAC speed.
package struct FrameSealer: Sendable {
    private let sendMAC: HMAC
    private let receiveMAC: HMAC
    private var sendSequence: UInt64 = 0
    private var receiveSequence: UInt64 = 0
    let headerOnlyTypes: Set<UInt8>

    package init(keys: SessionKeys, headerOnlyTypes: Set<UInt8> = []) {
        sendMAC = HMAC(key: keys.send)
        receiveMAC = HMAC(key: keys.receive)
        self.headerOnlyTypes = headerOnlyTypes
    }

    private func tag(_ base: HMAC, sequence: UInt64, type: UInt8, payload: UnsafeRawBufferPointer) -> [UInt8] {
        var mac = base
        var header = ByteWriter(capacity: 13)
        header.u64(sequence)
        header.u8(type)
        header.u32(UInt32(payload.count))
        mac.update(header.bytes)
        if !headerOnlyTypes.contains(type) { mac.update(payload) }
        return Array(mac.finalize().prefix(FrameDecoder.macSize))
    }

    /// The whole frame, ready to write.
    package mutating func seal(type: UInt8, payload: UnsafeRawBufferPointer) -> [UInt8] {
        let size = FrameDecoder.headerSize + payload.count + FrameDecoder.macSize
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            let frame = UnsafeMutableRawBufferPointer(buffer)
            let start = FrameDecoder.headerSize
            UnsafeMutableRawBufferPointer(rebasing: frame[start..<start + payload.count]).copyMemory(from: payload)
            count = sealInPlace(type: type, frame: frame, payloadCount: payload.count)
        }
    }

    /// Seals a frame built in place: `frame` starts with room for the header, then holds the
    /// payload (`payloadCount` bytes), then room for the MAC; the header and the MAC are
    /// written into it. Spares bulk payloads a copy.
    /// - Returns: the frame's size (the header, the payload and the MAC).
    package mutating func sealInPlace(type: UInt8, frame: UnsafeMutableRawBufferPointer, payloadCount: Int) -> Int {
        let end = FrameDecoder.headerSize + payloadCount
        precondition(frame.count >= end + FrameDecoder.macSize, "no room for the frame around the payload")
        var header = ByteWriter(capacity: FrameDecoder.headerSize)
        header.u32(UInt32(payloadCount))
        header.u8(type)
        header.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: frame[0..<FrameDecoder.headerSize]).copyMemory(from: $0) }
        let mac = tag(sendMAC, sequence: sendSequence, type: type, payload: UnsafeRawBufferPointer(rebasing: frame[FrameDecoder.headerSize..<end]))
        mac.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: frame[end..<end + FrameDecoder.macSize]).copyMemory(from: $0) }
        sendSequence += 1
        return end + FrameDecoder.macSize
    }

    package mutating func seal(type: UInt8, payload: [UInt8]) -> [UInt8] {
        payload.withUnsafeBytes { seal(type: type, payload: $0) }
    }

    /// Checks the next incoming frame.
    /// - Throws: `WireError.badMAC` when it was not sealed by the peer at this position.
    package mutating func open(_ frame: RawFrame) throws(WireError) {
        let expected = frame.payload.withUnsafeBytes {
            tag(receiveMAC, sequence: receiveSequence, type: frame.type, payload: $0)
        }
        guard constantTimeEqual(expected, frame.mac) else { throw .badMAC }
        receiveSequence += 1
    }
}
