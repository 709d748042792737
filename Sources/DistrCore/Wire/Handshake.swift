/// What a connection is for; part of the authenticated transcript.
package enum ConnectionKind: UInt8, Sendable {
    /// A master starting a job on a worker (cluster secret).
    case control = 1
    /// A rank asking a worker for a connection to one of its ranks (per-job key).
    case rank = 2
}

/// The mutual challenge-response that opens every connection. Pure: bytes in, bytes out.
///
/// ```
/// client → server  hello:  "DSTR" | u16 version | u8 kind | 32-byte nonce | u16 n | n bytes context
/// server → client  reply:  "DSTR" | u16 version | u8 status | 32-byte nonce | 32-byte proof
/// client → server  proof:  32 bytes
/// server → client  verdict: u8 (1 = accepted, 3 = busy: try again)
/// ```
/// A worker whose handshake slots are all taken displaces the oldest pending handshake (a
/// stalled client, or a slow real one) and tells it "busy" in whatever it was to read next: a
/// refusal reply with status busy before its reply, the busy verdict after. A client retries
/// busy until its connect timeout. "busy" is not authenticated; a forged one only makes a
/// client try again, which anyone on the path could cause anyway.
/// Proofs are HMAC-SHA256 under the shared key over a label and the transcript
/// (kind, context, both nonces); the labels differ per side, so neither proof can be reflected.
/// The session keys are derived the same way, one per direction.
package enum Handshake {
    package static let magic: [UInt8] = Array("DSTR".utf8)
    /// 2: the key wrap in jobStart and the ready/launch barrier; 3: heartbeats, stdin, status and
    /// queued jobs; 4: rank connections used both ways (verdict 2, docs/messages.md §2); 5: a
    /// file's digest may follow its bytes (`fileDigests`), so the master hashes while it sends.
    package static let version: UInt16 = 5
    package static let nonceSize = 32
    package static let helloFixedSize = 4 + 2 + 1 + 32 + 2
    package static let replySize = 4 + 2 + 1 + 32 + 32
    package static let maxContext = 1024

    /// The verdict byte: the server's last word in a handshake.
    package enum Verdict {
        package static let accepted: UInt8 = 1
        /// A rank connection accepted, and the target rank answers `bothWays` (docs/messages.md §2).
        package static let acceptedAnswering: UInt8 = 2
        /// Displaced while the client was proving its key (see above): try again.
        package static let busy: UInt8 = 3
    }

    package enum ReplyStatus: UInt8, Sendable {
        case ok = 0
        case versionMismatch = 1
        // 2 meant "unknown job" in version 1. Version 2 answers an unknown job like a wrong key.
        /// Too many connections are in their handshake (from this address, or in all): try again.
        case busy = 3
    }

    package struct Hello: Sendable, Equatable {
        package var version: UInt16
        package var kind: ConnectionKind
        package var nonce: [UInt8]
        package var context: [UInt8]

        package func encoded() -> [UInt8] {
            var w = ByteWriter(capacity: helloFixedSize + context.count)
            w.raw(magic)
            w.u16(version)
            w.u8(kind.rawValue)
            w.raw(nonce)
            w.u16(UInt16(context.count))
            w.raw(context)
            return w.bytes
        }

        /// Checks the first six bytes (magic and version) so that a stranger is turned away
        /// before the worker waits for the rest of a hello.
        /// `ours` is the version this side speaks (a test worker may advertise another, see
        /// `WorkerConfiguration.protocolVersion`).
        package static func checkPreamble(_ bytes: [UInt8], ours: UInt16 = Handshake.version) throws(WireError) {
            var r = ByteReader(bytes)
            guard try r.raw(4) == magic else { throw .badMagic }
            let version = try r.u16()
            guard version == ours else { throw .versionMismatch(theirs: version, ours: ours) }
        }

        /// Parses the fixed part; returns the hello without context and the context length to read next.
        package static func parseFixed(_ bytes: [UInt8], ours: UInt16 = Handshake.version) throws(WireError) -> (Hello, contextLength: Int) {
            var r = ByteReader(bytes)
            guard try r.raw(4) == magic else { throw .badMagic }
            let version = try r.u16()
            guard version == ours else { throw .versionMismatch(theirs: version, ours: ours) }
            guard let kind = ConnectionKind(rawValue: try r.u8()) else { throw .badMagic }
            let nonce = try r.raw(nonceSize)
            let length = Int(try r.u16())
            guard length <= maxContext else { throw .frameTooLarge(size: length, limit: maxContext) }
            return (Hello(version: version, kind: kind, nonce: nonce, context: []), length)
        }
    }

    static func transcript(kind: ConnectionKind, context: [UInt8], client: [UInt8], server: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.u8(kind.rawValue)
        w.data(context)
        w.raw(client)
        w.raw(server)
        return w.bytes
    }

    static func derive(_ label: String, key: [UInt8], transcript: [UInt8]) -> [UInt8] {
        var mac = HMAC(key: key)
        mac.update(Array(label.utf8))
        mac.update(transcript)
        return mac.finalize()
    }

    /// The client's side.
    package struct Client: Sendable {
        package let hello: Hello
        let key: [UInt8]

        package init(key: [UInt8], kind: ConnectionKind, context: [UInt8] = [], nonce: [UInt8] = randomBytes(nonceSize)) {
            self.key = key
            hello = Hello(version: Handshake.version, kind: kind, nonce: nonce, context: context)
        }

        /// Checks the server's reply; returns the client's proof to send and the session keys.
        /// - Throws: `WireError` when the server is not a distr worker, speaks another version,
        ///   does not know the job, or does not hold the same key.
        package func finish(reply: [UInt8]) throws(WireError) -> (proof: [UInt8], keys: SessionKeys) {
            var r = ByteReader(reply)
            guard reply.count == replySize, try r.raw(4) == magic else { throw .badMagic }
            let version = try r.u16()
            let status = try r.u8()
            if status == ReplyStatus.versionMismatch.rawValue || version != Handshake.version {
                throw .versionMismatch(theirs: version, ours: Handshake.version)
            }
            if status == ReplyStatus.busy.rawValue { throw .busy }
            let serverNonce = try r.raw(nonceSize)
            let serverProof = try r.raw(32)
            let t = transcript(kind: hello.kind, context: hello.context, client: hello.nonce, server: serverNonce)
            guard constantTimeEqual(serverProof, derive("distr server proof", key: key, transcript: t)) else {
                throw .authenticationFailed("the worker does not hold the same cluster secret")
            }
            let keys = SessionKeys(
                send: derive("distr client to server", key: key, transcript: t),
                receive: derive("distr server to client", key: key, transcript: t))
            return (derive("distr client proof", key: key, transcript: t), keys)
        }
    }

    /// The server's side, created once the client's hello has been read.
    package struct Server: Sendable {
        package let hello: Hello
        let key: [UInt8]
        let nonce: [UInt8]
        let transcript: [UInt8]

        package init(key: [UInt8], hello: Hello, nonce: [UInt8] = randomBytes(nonceSize)) {
            self.key = key
            self.hello = hello
            self.nonce = nonce
            transcript = Handshake.transcript(kind: hello.kind, context: hello.context, client: hello.nonce, server: nonce)
        }

        package var reply: [UInt8] {
            var w = ByteWriter(capacity: replySize)
            w.raw(magic)
            w.u16(Handshake.version)
            w.u8(ReplyStatus.ok.rawValue)
            w.raw(nonce)
            w.raw(derive("distr server proof", key: key, transcript: transcript))
            return w.bytes
        }

        /// A reply that only says no (version mismatch, busy), carrying no proof. Its version
        /// field is the version this side speaks: that is how a master learns what an older or
        /// newer worker runs (every release since version 1 has sent it there).
        package static func refusal(_ status: ReplyStatus, version: UInt16 = Handshake.version) -> [UInt8] {
            var w = ByteWriter(capacity: replySize)
            w.raw(magic)
            w.u16(version)
            w.u8(status.rawValue)
            w.raw([UInt8](repeating: 0, count: 64))
            return w.bytes
        }

        /// Checks the client's proof; returns the server's session keys.
        /// - Throws: `WireError.authenticationFailed` when the client does not hold the key.
        package func verify(proof: [UInt8]) throws(WireError) -> SessionKeys {
            guard constantTimeEqual(proof, derive("distr client proof", key: key, transcript: transcript)) else {
                throw .authenticationFailed("the client does not hold the same key")
            }
            return SessionKeys(
                send: derive("distr server to client", key: key, transcript: transcript),
                receive: derive("distr client to server", key: key, transcript: transcript))
        }
    }
}
