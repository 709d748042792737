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

    /// The MAC's input before the payload: sequence, type, payload length.
    private static func macHeader(sequence: UInt64, type: UInt8, count: Int) -> [UInt8] {
        var header = ByteWriter(capacity: 13)
        header.u64(sequence)
        header.u8(type)
        header.u32(UInt32(count))
        return header.bytes
    }

    /// `payloadCount`, when given, is the payload's length where `payload` is not at hand (a
    /// header-only type's, see `sealAround`).
    private func tag(_ base: HMAC, sequence: UInt64, type: UInt8, payload: UnsafeRawBufferPointer, payloadCount: Int? = nil) -> [UInt8] {
        var mac = base
        mac.update(Self.macHeader(sequence: sequence, type: type, count: payloadCount ?? payload.count))
        if !headerOnlyTypes.contains(type) { mac.update(payload) }
        return Array(mac.finalize().prefix(FrameDecoder.macSize))
    }

    /// The tags of two consecutive frames (`sequence` and the next), each payload a `head` then
    /// a `body`, the bodies hashed together (`HMAC.update(_:with:_:with:)`): what `tag` gives
    /// for each, at little more than the cost of one.
    private func tags(
        _ base: HMAC, sequence: UInt64, _ a: (type: UInt8, head: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer),
        _ b: (type: UInt8, head: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer)
    ) -> ([UInt8], [UInt8]) {
        var (macA, macB) = (base, base)
        macA.update(Self.macHeader(sequence: sequence, type: a.type, count: a.head.count + a.body.count))
        macB.update(Self.macHeader(sequence: sequence &+ 1, type: b.type, count: b.head.count + b.body.count))
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        let (wholeA, wholeB) = (!headerOnlyTypes.contains(a.type), !headerOnlyTypes.contains(b.type))
        if wholeA { macA.update(a.head) }
        if wholeB { macB.update(b.head) }
        HMAC.update(&macA, with: wholeA ? a.body : empty, &macB, with: wholeB ? b.body : empty)
        return (Array(macA.finalize().prefix(FrameDecoder.macSize)), Array(macB.finalize().prefix(FrameDecoder.macSize)))
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
        let end = Self.writeHeader(type: type, frame: frame, payloadCount: payloadCount)
        let mac = tag(sendMAC, sequence: sendSequence, type: type, payload: UnsafeRawBufferPointer(rebasing: frame[FrameDecoder.headerSize..<end]))
        Self.writeMAC(mac, into: frame, at: end)
        sendSequence += 1
        return end + FrameDecoder.macSize
    }

    /// Seals a frame of a type whose payload is left out of the MAC (`headerOnlyTypes`) without
    /// its payload at hand: writes the header (`FrameDecoder.headerSize` bytes) into `header`
    /// and the MAC (`FrameDecoder.macSize` bytes) into `mac`; the payload of `payloadCount`
    /// bytes must go between them.
    package mutating func sealAround(
        type: UInt8, payloadCount: Int, header: UnsafeMutableRawBufferPointer, mac: UnsafeMutableRawBufferPointer
    ) {
        precondition(headerOnlyTypes.contains(type), "the payload of this type is part of its MAC")
        _ = Self.writeHeader(type: type, frame: header, payloadCount: payloadCount, checkRoom: false)
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        let tag = tag(sendMAC, sequence: sendSequence, type: type, payload: empty, payloadCount: payloadCount)
        Self.writeMAC(tag, into: mac, at: 0)
        sendSequence += 1
    }

    /// Seals the next two outgoing frames, whose payloads are each a `head` then a `body` that
    /// need not lie together (they go out with `writev`): writes each frame's header into its
    /// `header` (`FrameDecoder.headerSize` bytes) and its MAC into its `mac`
    /// (`FrameDecoder.macSize` bytes), the two MACs computed together.
    package mutating func seal(
        _ a: (
            type: UInt8, header: UnsafeMutableRawBufferPointer, head: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
            mac: UnsafeMutableRawBufferPointer
        ),
        _ b: (
            type: UInt8, header: UnsafeMutableRawBufferPointer, head: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
            mac: UnsafeMutableRawBufferPointer
        )
    ) {
        _ = Self.writeHeader(type: a.type, frame: a.header, payloadCount: a.head.count + a.body.count, checkRoom: false)
        _ = Self.writeHeader(type: b.type, frame: b.header, payloadCount: b.head.count + b.body.count, checkRoom: false)
        let (macA, macB) = tags(sendMAC, sequence: sendSequence, (a.type, a.head, a.body), (b.type, b.head, b.body))
        Self.writeMAC(macA, into: a.mac, at: 0)
        Self.writeMAC(macB, into: b.mac, at: 0)
        sendSequence += 2
    }

    /// Writes the frame header at the start of `frame`; returns where the payload ends.
    private static func writeHeader(type: UInt8, frame: UnsafeMutableRawBufferPointer, payloadCount: Int, checkRoom: Bool = true) -> Int {
        let end = FrameDecoder.headerSize + payloadCount
        precondition(!checkRoom || frame.count >= end + FrameDecoder.macSize, "no room for the frame around the payload")
        var header = ByteWriter(capacity: FrameDecoder.headerSize)
        header.u32(UInt32(payloadCount))
        header.u8(type)
        header.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: frame[0..<FrameDecoder.headerSize]).copyMemory(from: $0) }
        return end
    }

    private static func writeMAC(_ mac: [UInt8], into frame: UnsafeMutableRawBufferPointer, at end: Int) {
        mac.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: frame[end..<end + FrameDecoder.macSize]).copyMemory(from: $0) }
    }

    package mutating func seal(type: UInt8, payload: [UInt8]) -> [UInt8] {
        payload.withUnsafeBytes { seal(type: type, payload: $0) }
    }

    /// Checks the next incoming frame.
    /// - Throws: `WireError.badMAC` when it was not sealed by the peer at this position.
    package mutating func open(_ frame: RawFrame) throws(WireError) {
        let expected = frame.payload.withUnsafeBytes { tag(receiveMAC, sequence: receiveSequence, type: frame.type, payload: $0) }
        guard constantTimeEqual(expected, frame.mac) else { throw .badMAC }
        receiveSequence += 1
    }

    /// Checks the next incoming frame, given where its parts lie.
    /// - Throws: `WireError.badMAC` when it was not sealed by the peer at this position.
    package mutating func open(type: UInt8, payload: UnsafeRawBufferPointer, mac: UnsafeRawBufferPointer) throws(WireError) {
        let expected = tag(receiveMAC, sequence: receiveSequence, type: type, payload: payload)
        guard constantTimeEqual(expected, Array(mac)) else { throw .badMAC }
        receiveSequence += 1
    }

    /// Checks the next two incoming frames, their MACs computed together.
    /// - Returns: how many of them, in order, were sealed by the peer at their position: 2, or
    ///   1 when only the first was (it counts as opened; the second does not).
    /// - Throws: `WireError.badMAC` when the first was not.
    package mutating func open(
        _ a: (type: UInt8, payload: UnsafeRawBufferPointer, mac: UnsafeRawBufferPointer),
        _ b: (type: UInt8, payload: UnsafeRawBufferPointer, mac: UnsafeRawBufferPointer)
    ) throws(WireError) -> Int {
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        let (expectedA, expectedB) = tags(receiveMAC, sequence: receiveSequence, (a.type, empty, a.payload), (b.type, empty, b.payload))
        guard constantTimeEqual(expectedA, Array(a.mac)) else { throw .badMAC }
        receiveSequence += 1
        guard constantTimeEqual(expectedB, Array(b.mac)) else { return 1 }
        receiveSequence += 1
        return 2
    }
}
