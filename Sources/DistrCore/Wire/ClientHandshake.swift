/// The client's side of the handshake (`Handshake`) as a pure state machine: the caller writes
/// `hello`, reads `bytesWanted` bytes at a time and hands them over, and writes what a step
/// says to send. Socket-free, so one thread can run the handshakes of many connections at once
/// (`Dialer`), and tested without sockets.
///
/// ```
/// awaitingReply ──reply──▶ awaitingVerdict (send the proof) ──verdict──▶ accepted
/// ```
package struct ClientHandshake: Sendable {
    package enum Step: Equatable, Sendable {
        /// Not enough bytes yet: read `bytesWanted` more.
        case needBytes
        /// Write these bytes (the proof), then read the verdict.
        case send([UInt8])
        /// The server accepted this client: the session keys, and the verdict byte
        /// (`Handshake.Verdict.accepted`, or `acceptedAnswering` on a rank connection).
        case accepted(SessionKeys, verdict: UInt8)
    }

    private enum State: Sendable {
        case awaitingReply
        case awaitingVerdict(SessionKeys)
        case accepted
    }

    private let client: Handshake.Client
    private var state = State.awaitingReply
    private var buffered: [UInt8] = []

    package init(_ client: Handshake.Client) {
        self.client = client
    }

    /// The first bytes to write.
    package var hello: [UInt8] { client.hello.encoded() }

    /// How many bytes the next step needs (0 once accepted).
    package var bytesWanted: Int {
        switch state {
        case .awaitingReply: Handshake.replySize - buffered.count
        case .awaitingVerdict: 1 - buffered.count
        case .accepted: 0
        }
    }

    /// Takes bytes the server sent (at most `bytesWanted`).
    /// - Throws: `WireError.busy` when the worker has no handshake slot for this client (try again
    ///   shortly), `.versionMismatch`, `.badMagic`, `.authenticationFailed` (the worker does not
    ///   hold the key, or rejected this client's), `.truncated` for more bytes than asked for.
    package mutating func received(_ bytes: some Collection<UInt8>) throws(WireError) -> Step {
        guard bytes.count <= bytesWanted else { throw .truncated }
        buffered.append(contentsOf: bytes)
        guard bytesWanted == 0 else { return .needBytes }
        let whole = buffered
        buffered = []
        switch state {
        case .awaitingReply:
            let (proof, keys) = try client.finish(reply: whole)
            state = .awaitingVerdict(keys)
            return .send(proof)
        case .awaitingVerdict(let keys):
            let verdict = whole[0]
            if verdict == Handshake.Verdict.busy { throw .busy }
            let answering = client.hello.kind == .rank && verdict == Handshake.Verdict.acceptedAnswering
            guard verdict == Handshake.Verdict.accepted || answering else { throw .authenticationFailed("the worker rejected this key") }
            state = .accepted
            return .accepted(keys, verdict: verdict)
        case .accepted:
            return .needBytes
        }
    }
}
