import Testing

@testable import DistrCore

/// A frame as the decoder hands it out, comparable.
struct DecodedFrame: Equatable {
    var frame: RankFrame
    var bytes: [UInt8]

    init(_ frame: RankFrame, payload: [UInt8], array: (any RawNumericArray)?) {
        self.frame = frame
        bytes = Envelope(source: 0, frame: frame, payload: payload, array: array).bytes
    }
}

/// Feeds `stream` in pieces cut at `cuts` and collects what comes out, up to a goodbye.
func decodeAll(_ stream: [UInt8], cuts: [Int], limit: Int = RankFrameDecoder.defaultMaxMessageBytes, signal: UInt8 = 0) throws(NodeError) -> (
    frames: [DecodedFrame], goodbye: Bool
) {
    var decoder = RankFrameDecoder(source: 3, maxMessageBytes: limit)
    decoder.signal = signal
    var frames: [DecodedFrame] = []
    var pieces = zip([0] + cuts, cuts + [stream.count]).map { Array(stream[$0..<$1]) }[...]
    while true {
        switch try decoder.next() {
        case .frame(let frame, let payload, let array): frames.append(DecodedFrame(frame, payload: payload, array: array?.value))
        case .signal(let frame): frames.append(DecodedFrame(frame, payload: [], array: nil))
        case .goodbye: return (frames, true)
        case .needBytes, .needPayload:
            guard let piece = pieces.popFirst() else { return (frames, false) }
            decoder.append(piece)
        }
    }
}

func header(kind: UInt8 = 1, encoding: UInt8 = 1, element: UInt8 = 0, tag: Int64 = 0, length: UInt64) -> [UInt8] {
    var w = ByteWriter(capacity: 24)
    w.u8(kind)
    w.u8(encoding)
    w.u8(element)
    w.u8(0)
    w.u32(0)
    w.i64(tag)
    w.u64(length)
    return w.bytes
}

@Suite struct RankFrameDecoderTests {
    static let small: [(RankFrame, [UInt8])] = [
        (RankFrame(encoding: .codable, fingerprint: 7, tag: 5, length: 5), [1, 2, 3, 4, 5]),
        (RankFrame(encoding: .numeric, element: Double.wireCode, tag: -3, length: 16), [Double]([1.5, -2]).withUnsafeBytes { Array($0) }),
        (RankFrame(encoding: .bytes, tag: 0, length: 0), []),
        (RankFrame(encoding: .numeric, element: Int16.wireCode, tag: 9, length: 2), [0xff, 0x7f]),
        // A pickled Python object: accepted (the receive fails later, the connection stays open).
        (RankFrame(encoding: .pickle, tag: 1, length: 3), [0x80, 0x05, 0x4e]),
    ]

    static func stream(_ frames: [(RankFrame, [UInt8])], goodbye: Bool) -> [UInt8] {
        var out = frames.flatMap { $0.0.header() + $0.1 }
        if goodbye { out += header(kind: RankFrame.goodbye, encoding: 0, length: 0) }
        return out
    }

    static var expected: [DecodedFrame] { small.map { DecodedFrame($0.0, payload: $0.1, array: nil) } }

    @Test func decoder_yieldsTheSameFramesWhereverTheStreamIsSplit() throws {
        let bytes = Self.stream(Self.small, goodbye: true)
        let whole = try decodeAll(bytes, cuts: [])
        #expect(whole.frames == Self.expected)
        #expect(whole.goodbye)
        for cut in 0...bytes.count {
            let split = try decodeAll(bytes, cuts: [cut])
            #expect(split.frames == Self.expected, "cut at \(cut)")
            #expect(split.goodbye)
        }
        let byteByByte = try decodeAll(bytes, cuts: Array(1..<bytes.count))
        #expect(byteByByte.frames == Self.expected)
    }

    @Test func decoder_typesNumericPayloadsAndKeepsOnlyWholeFrames() throws {
        let bytes = Self.stream(Self.small, goodbye: false)
        for cut in 0..<bytes.count {
            // Only what arrived completely comes out.
            let partial = try decodeAll(Array(bytes.prefix(cut)), cuts: [])
            #expect(!partial.goodbye)
            #expect(Self.expected.starts(with: partial.frames))
        }
        var decoder = RankFrameDecoder(source: 1)
        decoder.append(bytes)
        _ = try decoder.next()
        guard case .frame(_, _, let array) = try decoder.next() else {
            Issue.record("expected the numeric frame")
            return
        }
        #expect(array?.value as? [Double] == [1.5, -2])
    }

    @Test func decoder_readsLargePayloadsStraightIntoTheirArray() throws {
        let values = (0..<10_000).map { Double($0) / 3 }
        let payload = values.withUnsafeBytes { Array($0) }
        let frame = RankFrame(encoding: .numeric, element: Double.wireCode, tag: 1, length: payload.count)
        var decoder = RankFrameDecoder(source: 2)
        decoder.append(frame.header() + payload.prefix(100))
        var offset = 100
        var direct = 0
        while true {
            let step = try decoder.next()
            if case .frame(let got, _, let array) = step {
                #expect(got == frame)
                #expect(array?.value as? [Double] == values)
                break
            }
            #expect(offset < payload.count)
            if case .needPayload = step { direct += 1 }
            // As a socket read would: at most 5000 bytes into whatever space the decoder offers.
            let n = decoder.readIntoPayload { space in
                let n = min(space.count, payload.count - offset, 5000)
                space.copyMemory(from: UnsafeRawBufferPointer(rebasing: payload.withUnsafeBytes { $0 }[offset..<offset + n]))
                return n
            }
            offset += n
        }
        #expect(direct > 0)
        #expect(decoder.isAtFrameBoundary)
    }

    /// Reads frames from `stream` as a socket holding all of it would (as much as the decoder
    /// offers each time); the sizes offered, frame by frame, and how many reads went straight
    /// into a payload's array.
    static func readAsASocketWould(_ stream: [UInt8], frames: Int) throws -> (offered: [[Int]], direct: Int, payloads: [[UInt8]]) {
        var decoder = RankFrameDecoder(source: 2)
        var offset = 0
        var offered: [[Int]] = [[]]
        var payloads: [[UInt8]] = []
        var direct = 0
        while payloads.count < frames {
            let step = try decoder.next()
            if case .frame(_, let got, _) = step {
                payloads.append(got)
                offered.append([])
                continue
            }
            if case .needPayload = step { direct += 1 }
            let n = decoder.readIntoPayload { space in
                offered[offered.count - 1].append(space.count)
                let n = min(space.count, stream.count - offset)
                space.copyMemory(from: UnsafeRawBufferPointer(rebasing: stream.withUnsafeBytes { $0 }[offset..<offset + n]))
                return n
            }
            offset += n
        }
        #expect(decoder.isAtFrameBoundary)
        return (offered.dropLast(), direct, payloads)
    }

    @Test func decoder_readsAFrameOfUpTo32KiBInOneRead_afterALargeFrameLittleSoTheNextPayloadGoesIntoItsArray() throws {
        let medium = [UInt8](repeating: 5, count: RankFrameDecoder.directThreshold)
        let large = [UInt8](repeating: 6, count: 64 * 1024)
        var stream: [UInt8] = []
        for payload in [medium, large, large, medium, medium] {
            stream += RankFrame(encoding: .bytes, tag: 0, length: payload.count).header() + payload
        }
        let (offered, direct, payloads) = try Self.readAsASocketWould(stream, frames: 5)
        #expect(payloads == [medium, large, large, medium, medium])
        let whole = RankFrameDecoder.boundaryReadSize
        let small = RankFrameDecoder.boundaryReadAfterLarge
        #expect(whole == RankFrame.headerSize + medium.count)
        // A 32 KiB frame: header and payload in one read.
        #expect(offered[0] == [whole])
        // The first large frame begins like any other, then its rest goes into its array.
        #expect(offered[1].first == whole)
        #expect(offered[1].count == 2)
        // After it, a small read for the header and the payload's start, then the rest.
        #expect(offered[2] == [small, large.count - (small - RankFrame.headerSize)])
        // The medium frame after a large one costs two reads; the one after it one again.
        #expect(offered[3].count == 2)
        #expect(offered[4] == [whole])
        #expect(direct == 2)
    }

    @Test func decoder_rejectsFrameLargerThanLimitBeforeAllocating() throws {
        let hostile = header(encoding: 2, element: 12, length: 1 << 60)
        #expect(throws: NodeError.messageTooLarge(rank: 3, size: 1 << 60, limit: 1 << 30)) { try decodeAll(hostile, cuts: []) }
        let error = NodeError.messageTooLarge(rank: 3, size: 1 << 60, limit: 1 << 30)
        #expect(
            "\(error)"
                == "rank 3 sent a message of 1152921504606846976 bytes, over the limit of 1073741824 (DISTR_MAX_MESSAGE_BYTES); the connection from rank 3 was closed"
        )
        // The limit itself is allowed; one byte more is not.
        let atLimit = header(length: 100) + [UInt8](repeating: 0, count: 100)
        #expect(try decodeAll(atLimit, cuts: [], limit: 100).frames.count == 1)
        #expect(throws: NodeError.messageTooLarge(rank: 3, size: 101, limit: 100)) { try decodeAll(header(length: 101), cuts: [], limit: 100) }
        #expect(throws: NodeError.messageTooLarge(rank: 3, size: UInt64.max, limit: 100)) {
            try decodeAll(header(length: UInt64.max), cuts: [], limit: 100)
        }
    }

    static let malformed: [([UInt8], String)] = [
        (header(kind: 0, length: 0), "unknown frame kind 0"),
        (header(kind: 6, length: 0), "unknown frame kind 6"),
        (header(kind: 255, length: 0), "unknown frame kind 255"),
        (header(encoding: 4, length: 0), "unknown encoding 4"),
        (header(encoding: 255, length: 0), "unknown encoding 255"),
        (header(encoding: 2, element: 0, length: 8), "unknown numeric element code 0"),
        (header(encoding: 2, element: 13, length: 8), "unknown numeric element code 13"),
        (header(encoding: 2, element: 1, length: 7), "a numeric payload of 7 bytes is not a whole number of 8-byte elements"),
        (header(encoding: 2, element: 5, length: 6), "a numeric payload of 6 bytes is not a whole number of 4-byte elements"),
    ]

    @Test(arguments: malformed)
    func decoder_rejectsMalformedHeaderWhereverItIsSplit(bad: [UInt8], detail: String) throws {
        let error = NodeError.badFrame(rank: 3, detail: detail)
        // After a good frame, and cut at every byte boundary.
        let bytes = Self.stream(Array(Self.small.prefix(1)), goodbye: false) + bad + [1, 2, 3]
        for cut in 0...bytes.count {
            #expect(throws: error) { try decodeAll(bytes, cuts: [cut]) }
        }
        // The error stays: nothing after a bad header can be framed.
        var decoder = RankFrameDecoder(source: 3)
        decoder.append(bad + Self.stream(Self.small, goodbye: false))
        #expect(throws: error) { try decoder.next() }
        #expect(throws: error) { try decoder.next() }
        #expect("\(error)" == "rank 3 sent a malformed message header (\(detail)); the connection from rank 3 was closed")
    }

    @Test func decoder_goodbyeEndsTheStream() throws {
        var decoder = RankFrameDecoder(source: 0)
        decoder.append(header(kind: 2, encoding: 0, length: 0) + Self.stream(Self.small, goodbye: false))
        guard case .goodbye = try decoder.next(), case .goodbye = try decoder.next() else {
            Issue.record("expected goodbye, twice")
            return
        }
    }

    @Test func fuzzEntryPoint_neverCrashesOnArbitraryBytes() throws {
        var generator = SplitMix(seed: 1)
        let valid = Self.stream(Self.small, goodbye: true)
        #expect(try PeerInputFuzzing.decodeRankFrames([0] + valid) == Self.small.count)
        for round in 0..<2000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0..<200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            } else {
                // Mutations of a valid stream reach past the header checks.
                bytes = [UInt8.random(in: 0...255, using: &generator)] + valid
                for _ in 0..<3 { bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            }
            do { _ = try PeerInputFuzzing.decodeRankFrames(bytes) } catch {
                #expect("\(error)".contains("rank 1 sent"))
            }
        }
    }

    /// Two drains can race on one connection (a receiving task and the progress thread): after a
    /// malformed header, every later read must still report the failure. A plain end of stream
    /// there lost the error, and the receive waiting for that rank hung (seen 5 in 40 runs).
    @Test func streamReader_keepsReportingTheFailureAfterAMalformedHeader() throws {
        let (mine, theirs) = try UnixSocket.pair()
        defer {
            FD.close(mine)
            FD.close(theirs)
        }
        FD.setNonblocking(theirs)
        let bad = header(encoding: 9, length: 0)
        try bad.withUnsafeBytes { try UnixSocket.send(mine, $0) }
        var reader = FrameStreamReader(input: ByteInput(fd: theirs, ring: nil), decoder: RankFrameDecoder(source: 3))
        for attempt in 0..<3 {
            guard case .failed(let error) = reader.next() else {
                Issue.record("read \(attempt) after the bad header is not a failure")
                return
            }
            #expect("\(error)".contains("rank 3 sent a malformed message header"), "\(error)")
        }
    }
}

/// A small deterministic generator for tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The connection signals (`RankFrame.bothWays`, `.answer`): only as the first frame, of the
/// kind the connection allows, header only.
@Suite struct ConnectionSignalDecodingTests {
    static let message = RankFrame(encoding: .bytes, tag: 4, length: 2)

    @Test func aSignalIsTakenAsTheFirstFrameOfTheKindAllowed() throws {
        for (kind, tag) in [(RankFrame.bothWays, 0), (RankFrame.answer, 1), (RankFrame.answer, 0), (RankFrame.answer, 2)] {
            let stream = RankFrame.signal(kind, tag: tag).header() + Self.message.header() + [7, 8]
            for cut in 0...stream.count {
                let (frames, _) = try decodeAll(stream, cuts: [cut], signal: kind)
                #expect(
                    frames == [
                        DecodedFrame(RankFrame.signal(kind, tag: tag), payload: [], array: nil),
                        DecodedFrame(Self.message, payload: [7, 8], array: nil),
                    ])
            }
        }
    }

    @Test func aSignalAnywhereElseBreaksTheProtocol() {
        let outOfPlace = NodeError.badFrame(
            rank: 3, detail: "a connection signal of kind 4 where none may come (only as the first frame, in answer)")
        let bothWays = RankFrame.signal(RankFrame.bothWays).header()
        // Not allowed on this connection (a local one, or one that expects the answer).
        #expect(throws: outOfPlace) { try decodeAll(bothWays, cuts: []) }
        #expect(throws: outOfPlace) { try decodeAll(bothWays, cuts: [], signal: RankFrame.answer) }
        // After the first frame.
        #expect(throws: outOfPlace) { try decodeAll(Self.message.header() + [1, 2] + bothWays, cuts: [], signal: RankFrame.bothWays) }
        // Twice.
        #expect(throws: outOfPlace) { try decodeAll(bothWays + bothWays, cuts: [], signal: RankFrame.bothWays) }
    }

    @Test func aSignalWithAPayloadOrAnUnknownAnswerBreaksTheProtocol() {
        let answer = RankFrame.answer
        let cases: [([UInt8], UInt8, String)] = [
            (header(kind: RankFrame.bothWays, encoding: 0, length: 1) + [0], RankFrame.bothWays, "kind 4 with a payload of 1 bytes"),
            (header(kind: RankFrame.bothWays, encoding: 1, length: 0), RankFrame.bothWays, "kind 4 with an encoding, element or fingerprint"),
            (header(kind: RankFrame.bothWays, encoding: 0, tag: 1, length: 0), RankFrame.bothWays, "kind 4 with the tag 1"),
            (header(kind: answer, encoding: 0, tag: 3, length: 0), answer, "kind 5 with the tag 3"),
            (header(kind: answer, encoding: 0, tag: -1, length: 0), answer, "kind 5 with the tag -1"),
            (header(kind: answer, encoding: 0, element: 3, length: 0), answer, "kind 5 with an encoding, element or fingerprint"),
        ]
        for (bytes, signal, detail) in cases {
            #expect(throws: NodeError.badFrame(rank: 3, detail: "a connection signal of \(detail)")) {
                try decodeAll(bytes, cuts: [], signal: signal)
            }
        }
    }
}
