/// Targets for what arrives on sockets: control frames and messages, the handshake, agent packets.
extension FuzzTarget {
    /// Keys of the receiving side; seeds are sealed with `peerFrameKeys` so that they open.
    static let frameKeys = SessionKeys(send: [UInt8](repeating: 0x5A, count: 32), receive: [UInt8](repeating: 0xA5, count: 32))
    static let peerFrameKeys = SessionKeys(send: frameKeys.receive, receive: frameKeys.send)
    /// Small, so that the fuzzer reaches both sides of the limit.
    static let frameLimit = 64 * 1024

    /// Decodes the stream once whole and once split into the given chunks: both must give the
    /// same frames and the same error, and nothing may trap.
    static func frames(_ data: [UInt8]) {
        guard let first = data.first else { return }
        let splits = Int(first % 8)
        guard data.count > splits else { return }
        let chunkSizes = data[1..<1 + splits].map { max(1, Int($0)) }
        let stream = Array(data[(1 + splits)...])
        let whole = FrameStreamOutcome(stream, chunkSizes: [])
        let split = FrameStreamOutcome(stream, chunkSizes: chunkSizes)
        fuzzCheck(whole == split, "stream decoded whole gave \(whole), split at \(chunkSizes) gave \(split)")
    }

    /// Whatever decodes must re-encode to bytes that decode equal.
    static func controlMessage(_ data: [UInt8]) {
        guard let type = data.first else { return }
        let decoded = try? ControlMessage.decode(type: type, payload: Array(data.dropFirst()))  // Most input is expected not to decode.
        guard let message = decoded else { return }
        fuzzCheck(message.type == type, "type \(type) decoded as a message of type \(message.type)")
        let again = try? ControlMessage.decode(type: message.type, payload: message.encoded())  // A failure is a finding: checked below.
        fuzzCheck(again == message, "\(message) re-encoded decodes as \(String(describing: again))")
    }

    static let handshakeKey = [UInt8](repeating: 0x42, count: 32)
    static let serverNonce = (0..<UInt8(Handshake.nonceSize)).map { $0 &+ 0x80 }
    static let handshakeClient = Handshake.Client(
        key: handshakeKey, kind: .rank, context: Array("job-1/rank-0".utf8), nonce: (0..<UInt8(Handshake.nonceSize)).map { $0 })

    /// The input is read by both sides: by the server as a hello (fixed part, context, then the
    /// client's proof), and by the client as the server's reply. Whatever is accepted must be
    /// what the holder of the key would have sent.
    static func handshake(_ data: [UInt8]) {
        let preambleAccepted = (try? Handshake.Hello.checkPreamble(data)) != nil  // Refusal expected.
        if let (hello, contextLength) = try? Handshake.Hello.parseFixed(data) {  // Refusal expected.
            fuzzCheck(preambleAccepted, "parseFixed accepted a hello whose preamble checkPreamble refused")
            fuzzCheck(contextLength <= Handshake.maxContext, "context length \(contextLength) over the limit")
            fuzzCheck(hello.nonce.count == Handshake.nonceSize, "nonce of \(hello.nonce.count) bytes")
            let rest = data.dropFirst(Handshake.helloFixedSize)
            if rest.count >= contextLength {
                var full = hello
                full.context = Array(rest.prefix(contextLength))
                fuzzCheck(
                    full.encoded() == Array(data.prefix(Handshake.helloFixedSize + contextLength)),
                    "hello does not re-encode to the bytes it was parsed from")
                let server = Handshake.Server(key: handshakeKey, hello: full, nonce: serverNonce)
                let proof = Array(rest.dropFirst(contextLength))
                if let keys = try? server.verify(proof: proof) {  // A wrong proof is expected.
                    let client = Handshake.Client(key: handshakeKey, kind: full.kind, context: full.context, nonce: full.nonce)
                    let finished = try? client.finish(reply: server.reply)  // Checked below.
                    fuzzCheck(finished?.proof == proof, "the server accepted a proof that the key holder would not send")
                    fuzzCheck(finished?.keys == SessionKeys(send: keys.receive, receive: keys.send), "the two sides derived different keys")
                }
            }
        }
        if let (proof, keys) = try? handshakeClient.finish(reply: data) {  // A forged reply is expected.
            let server = Handshake.Server(key: handshakeKey, hello: handshakeClient.hello, nonce: Array(data[7..<7 + Handshake.nonceSize]))
            fuzzCheck(Array(data.suffix(32)) == Array(server.reply.suffix(32)), "the client accepted a reply the key holder would not send")
            let serverKeys = try? server.verify(proof: proof)  // Checked below.
            fuzzCheck(serverKeys == SessionKeys(send: keys.receive, receive: keys.send), "the two sides derived different keys")
        }
        // The client's machine, fed the same bytes in pieces (sized by the bytes themselves, at
        // most what it asks for): it may only end accepted on the reply `finish` accepts,
        // followed by an accepting verdict, with the same keys.
        var machine = ClientHandshake(handshakeClient)
        var offset = 0
        while offset < data.count && machine.bytesWanted > 0 {
            let size = min(machine.bytesWanted, 1 + Int(data[offset] % 16), data.count - offset)
            let step = try? machine.received(data[offset..<offset + size])  // Refusal expected.
            offset += size
            guard let step else { break }
            if case .accepted(let keys, let verdict) = step {
                let expected = try? handshakeClient.finish(reply: Array(data.prefix(Handshake.replySize)))  // Checked below.
                fuzzCheck(expected?.keys == keys, "the machine accepted a reply that finish refuses, or derived other keys")
                fuzzCheck(
                    verdict == data[Handshake.replySize]
                        && (verdict == Handshake.Verdict.accepted || verdict == Handshake.Verdict.acceptedAnswering),
                    "the machine accepted the verdict \(verdict)")
            }
        }
    }

    /// Whatever decodes must re-encode to bytes that decode equal.
    static func agentMessage(_ data: [UInt8]) {
        guard let message = try? AgentMessage.decode(data) else { return }  // Most input is expected not to decode.
        let again = try? AgentMessage.decode(message.encoded())  // A failure is a finding: checked below.
        fuzzCheck(again == message, "\(message) re-encoded decodes as \(String(describing: again))")
    }
}

/// What a receiver makes of a byte stream: the frames it opened and the error that ended it.
struct FrameStreamOutcome: Equatable, CustomStringConvertible {
    var frames: [RawFrame] = []
    var error: WireError?
    /// Bytes still buffered at the end of a stream that ended without an error.
    var leftover = 0

    /// Feeds `stream` to a decoder in chunks of the given sizes (cycled; all at once when empty)
    /// and opens each frame, as `Connection.receive` does.
    init(_ stream: [UInt8], chunkSizes: [Int]) {
        var decoder = FrameDecoder(maxPayload: FuzzTarget.frameLimit)
        var sealer = FrameSealer(keys: FuzzTarget.frameKeys, headerOnlyTypes: [ControlMessage.fileDataType])
        var offset = 0
        var chunk = 0
        repeat {
            let size = chunkSizes.isEmpty ? stream.count : chunkSizes[chunk % chunkSizes.count]
            let end = min(stream.count, offset + size)
            decoder.append(Array(stream[offset..<end]))
            offset = end
            chunk += 1
            do throws(WireError) {
                while let frame = try decoder.next() {
                    fuzzCheck(frame.payload.count <= FuzzTarget.frameLimit, "frame of \(frame.payload.count) bytes passed the limit")
                    fuzzCheck(frame.mac.count == FrameDecoder.macSize, "MAC of \(frame.mac.count) bytes")
                    try sealer.open(frame)
                    frames.append(frame)
                    _ = try? ControlMessage.decode(type: frame.type, payload: frame.payload)  // Payloads need not be messages.
                }
            } catch {
                self.error = error
                return
            }
        } while offset < stream.count
        leftover = decoder.bufferedBytes
    }

    var description: String { "\(frames.count) frames, error \(String(describing: error)), \(leftover) bytes left" }
}
