import Testing

@testable import DistrCore

/// The offer frame of point-to-point single copy (kind 3): its description survives a round trip
/// through the decoder, and every field a peer controls is checked.
@Suite struct OfferedSendTests {
    static let valid = OfferedSend(
        id: 7,
        memory: MemoryOffer(pid: 4242, address: 1 << 30, byteCount: 1 << 20, elementCode: Double.wireCode, identity: 99, identityAddress: 1 << 29))

    static func frame(element: UInt8 = Double.wireCode, encoding: UInt8 = 2, length: Int = OfferedSend.wireSize) -> [UInt8] {
        header(kind: RankFrame.offer, encoding: encoding, element: element, tag: 3, length: UInt64(length))
    }

    @Test func offer_survivesTheDecoderAsABytesPayload() throws {
        let decoded = try decodeAll(Self.frame() + Self.valid.encoded, cuts: [5, 30])
        #expect(decoded.frames.count == 1)
        let frame = try #require(decoded.frames.first)
        #expect(frame.frame.kind == RankFrame.offer && !frame.frame.holdsArray && frame.frame.tag == 3)
        let back = try OfferedSend(decoding: frame.bytes, element: Double.wireCode, from: 3, limit: 1 << 30)
        #expect(back == Self.valid)
    }

    @Test(arguments: [
        (Double.wireCode, UInt8(1), OfferedSend.wireSize),  // encoding codable
        (UInt8(99), UInt8(2), OfferedSend.wireSize),  // unknown element
        (Double.wireCode, UInt8(2), OfferedSend.wireSize + 8),  // wrong size
    ])
    func decoder_rejectsAnOfferFrameThatIsNotADescription(element: UInt8, encoding: UInt8, length: Int) {
        #expect(throws: NodeError.self) {
            try decodeAll(Self.frame(element: element, encoding: encoding, length: length) + [UInt8](repeating: 0, count: length), cuts: [])
        }
    }

    @Test func offer_rejectsImplausibleFields() {
        func decoding(_ change: (inout OfferedSend) -> Void, element: UInt8 = Double.wireCode, limit: Int = 1 << 30) -> NodeError? {
            var offer = Self.valid
            change(&offer)
            do {
                _ = try OfferedSend(decoding: offer.encoded, element: element, from: 5, limit: limit)
                return nil
            } catch { return error }
        }
        #expect(decoding { _ in } == nil)
        #expect(decoding { $0.memory.pid = 0 } != nil)
        #expect(decoding { $0.memory.pid = -3 } != nil)
        #expect(decoding { $0.memory.byteCount = 0 } != nil)
        #expect(decoding { $0.memory.byteCount = 12 } != nil)  // not whole doubles
        #expect(decoding({ _ in }, limit: 1 << 19) != nil)  // over the receiver's limit
        #expect(decoding { $0.memory.address = 0 } != nil)
        #expect(decoding { $0.memory.address = UInt64.max - 10 } != nil)
        #expect(decoding({ _ in }, element: 99) != nil)
        guard case .badFrame(let rank, _)? = decoding({ $0.memory.pid = 0 }) else {
            Issue.record("expected badFrame")
            return
        }
        #expect(rank == 5)
    }

    /// `leave()` takes every unanswered array to resend it; a send racing it must not leave a
    /// new offer behind that nothing would resend before the process exits.
    @Test func takeAll_closesTheTable() {
        let sends = OfferedSends()
        let array = [Double](repeating: 1, count: 16)
        let first = sends.keep(array, byteCount: 128, for: 2)
        #expect(first?.startReader == true)
        #expect(sends.keep(array, byteCount: 128, for: 2)?.startReader == false)
        let taken = sends.takeAll()
        #expect(taken.map(\.id) == [first?.id ?? 0, (first?.id ?? 0) + 1])
        #expect(!sends.hasRoom(for: 128))
        #expect(sends.keep(array, byteCount: 128, for: 2) == nil)
        #expect(sends.takeAll().isEmpty)
    }

    /// Only `Array`s are offered (by `send`, broadcast and allReduce): a conforming type with
    /// reference semantics would let a change after the send reach the receiver.
    @Test func onlyArraysAreOffered() {
        #expect(RawNumericTypes.isArray([Double](repeating: 1, count: 4)))
        #expect(RawNumericTypes.isArray([UInt8]()))
        #expect(!RawNumericTypes.isArray(SharedDoubles()))
        #expect(RawNumericTypes.isArrayType([Int16].self))
        #expect(!RawNumericTypes.isArrayType(SharedDoubles.self))
    }
}

/// A conforming type with reference semantics (a class).
private final class SharedDoubles: RawNumericArray, @unchecked Sendable {
    var values: [Double] = [1, 2]

    static var elementCode: UInt8 { Double.wireCode }
    static var elementSize: Int { 8 }
    var elementCount: Int { values.count }
    init() {}
    func appendRawBytes(to bytes: inout [UInt8]) { values.appendRawBytes(to: &bytes) }
    func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try values.withRawBytes(body) }
    static func fromRawBytes(_ bytes: UnsafeRawBufferPointer) -> Self? { nil }
    static func filled(count: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Bool) -> Self? { nil }
    static func uninitialized(count: Int) -> Self { Self() }
    func withMutableRawBytes<R>(_ body: (UnsafeMutableRawBufferPointer) -> R) -> R { values.withMutableRawBytes(body) }
}
