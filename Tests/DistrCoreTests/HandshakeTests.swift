import Testing

@testable import DistrCore

@Suite struct HandshakeTests {
    let secret = Array(repeating: UInt8(7), count: 32)

    func serverFor(_ client: Handshake.Client, key: [UInt8]) throws -> Handshake.Server {
        let bytes = client.hello.encoded()
        var (hello, length) = try Handshake.Hello.parseFixed(Array(bytes.prefix(Handshake.helloFixedSize)))
        hello.context = Array(bytes.suffix(length))
        return Handshake.Server(key: key, hello: hello)
    }

    @Test func sameSecret_bothSidesDeriveMatchingDirectionalKeys() throws {
        let client = Handshake.Client(key: secret, kind: .control, context: [1, 2])
        let server = try serverFor(client, key: secret)
        let (proof, clientKeys) = try client.finish(reply: server.reply)
        let serverKeys = try server.verify(proof: proof)
        #expect(clientKeys.send == serverKeys.receive)
        #expect(clientKeys.receive == serverKeys.send)
        #expect(clientKeys.send != clientKeys.receive)
    }

    /// The client's side of a real handshake over a socket pair whose server half answers with
    /// `verdict` after checking the proof; the client's error, nil when it succeeded.
    func clientHandshake(answeringWith verdict: UInt8) throws -> WireError? {
        switch try handshake(kind: .control, answeringWith: verdict) {
        case .success: nil
        case .failure(let error): error
        }
    }

    /// A client handshake of `kind` against a server that answers `verdict`: for a rank
    /// connection, whether the target answers `bothWays` (verdict 2); or the client's error.
    func handshake(kind: ConnectionKind, answeringWith verdict: UInt8) throws -> Result<Bool, WireError> {
        let (clientFD, serverFD) = try UnixSocket.pair()
        let secret = secret
        let served = Latch()
        Threads.start(name: "test-server") {
            defer { served.open() }
            do {
                _ = try Connection.serverHandshake(fd: serverFD, deadline: .after(30)) { _ in secret }
                try FD.writeAll(serverFD, [verdict])
            } catch { Issue.record("server side: \(error)") }
        }
        defer {
            served.wait()
            FD.close(serverFD)
        }
        do {
            if kind == .rank {
                let answers = try Connection.rankHandshake(fd: clientFD, key: secret, context: [], timeout: 30)
                FD.close(clientFD)
                return .success(answers)
            }
            let keys = try Connection.clientHandshake(fd: clientFD, key: secret, kind: kind, context: [], timeout: 30)
            FD.close(clientFD)
            #expect(keys.send.count == 32)
            return .success(false)
        } catch let error as WireError {
            return .failure(error)
        }
    }

    @Test func verdict_acceptedGivesTheKeys_busyIsToldAsBusy_anythingElseIsARejection() throws {
        #expect(try clientHandshake(answeringWith: Handshake.Verdict.accepted) == nil)
        #expect(try clientHandshake(answeringWith: Handshake.Verdict.busy) == .busy)
        #expect(try clientHandshake(answeringWith: 0) == .authenticationFailed("the worker rejected this key"))
        // Verdict 2 (the target rank answers `bothWays`) belongs to rank connections only.
        #expect(try clientHandshake(answeringWith: Handshake.Verdict.acceptedAnswering) == .authenticationFailed("the worker rejected this key"))
    }

    @Test func rankVerdict_saysWhetherTheTargetAnswersBothWays() throws {
        #expect(try handshake(kind: .rank, answeringWith: Handshake.Verdict.accepted) == .success(false))
        #expect(try handshake(kind: .rank, answeringWith: Handshake.Verdict.acceptedAnswering) == .success(true))
        #expect(try handshake(kind: .rank, answeringWith: 4) == .failure(.authenticationFailed("the worker rejected this key")))
    }

    @Test func wrongSecret_clientRejectsServerProof() throws {
        let client = Handshake.Client(key: secret, kind: .control)
        let server = try serverFor(client, key: Array(repeating: 8, count: 32))
        #expect(throws: WireError.self) { try client.finish(reply: server.reply) }
    }

    @Test func wrongSecret_serverRejectsClientProof() throws {
        let client = Handshake.Client(key: Array(repeating: 8, count: 32), kind: .control)
        let honest = Handshake.Client(key: secret, kind: .control, nonce: client.hello.nonce)
        let server = try serverFor(client, key: secret)
        // A client without the secret cannot produce the proof; replaying the server's is useless.
        let forged = (try? honest.finish(reply: server.reply))?.proof.map { $0 ^ 1 } ?? []
        #expect(throws: WireError.self) { try server.verify(proof: forged) }
        #expect(throws: WireError.self) { try server.verify(proof: Array(server.reply.suffix(32))) }
    }

    @Test func tamperedContext_changesTranscriptAndFailsTheProof() throws {
        let client = Handshake.Client(key: secret, kind: .rank, context: [1, 2, 3])
        var bytes = client.hello.encoded()
        bytes[bytes.count - 1] ^= 1
        var (hello, length) = try Handshake.Hello.parseFixed(Array(bytes.prefix(Handshake.helloFixedSize)))
        hello.context = Array(bytes.suffix(length))
        let server = Handshake.Server(key: secret, hello: hello)
        #expect(throws: WireError.self) { try client.finish(reply: server.reply) }
    }

    @Test func hello_rejectsBadMagicAndOtherVersion() {
        var bytes = Handshake.Client(key: secret, kind: .control).hello.encoded()
        var wrongMagic = bytes
        wrongMagic[0] = UInt8(ascii: "X")
        #expect(throws: WireError.badMagic) { try Handshake.Hello.parseFixed(Array(wrongMagic.prefix(Handshake.helloFixedSize))) }
        bytes[5] = 99
        #expect(throws: WireError.versionMismatch(theirs: 99, ours: Handshake.version)) {
            try Handshake.Hello.parseFixed(Array(bytes.prefix(Handshake.helloFixedSize)))
        }
    }

    @Test func client_reportsRefusalAndVersionFromReply() {
        let client = Handshake.Client(key: secret, kind: .rank)
        #expect(throws: WireError.busy) { try client.finish(reply: Handshake.Server.refusal(.busy)) }
        #expect(throws: WireError.versionMismatch(theirs: Handshake.version, ours: Handshake.version)) {
            try client.finish(reply: Handshake.Server.refusal(.versionMismatch))
        }
        #expect(throws: WireError.self) { try client.finish(reply: Array(repeating: 0, count: Handshake.replySize)) }
    }

    /// The client's machine, fed by hand: bytes one at a time, the proof to send, the verdict.
    @Test func clientMachine_takesTheReplyInPieces_sendsTheProof_andEndsOnTheVerdict() throws {
        var machine = ClientHandshake(Handshake.Client(key: secret, kind: .control))
        let hello = machine.hello
        var (parsed, length) = try Handshake.Hello.parseFixed(Array(hello.prefix(Handshake.helloFixedSize)))
        parsed.context = Array(hello.suffix(length))
        let server = Handshake.Server(key: secret, hello: parsed)
        #expect(machine.bytesWanted == Handshake.replySize)
        var proof: [UInt8] = []
        for (index, byte) in server.reply.enumerated() {
            let step = try machine.received([byte])
            if index < Handshake.replySize - 1 {
                #expect(step == .needBytes)
            } else if case .send(let bytes) = step {
                proof = bytes
            } else {
                Issue.record("the whole reply gave \(step), not the proof")
            }
        }
        let serverKeys = try server.verify(proof: proof)
        #expect(machine.bytesWanted == 1)
        #expect(throws: WireError.truncated) { try machine.received([1, 1]) }
        let ended = try machine.received([Handshake.Verdict.accepted])
        #expect(ended == .accepted(SessionKeys(send: serverKeys.receive, receive: serverKeys.send), verdict: Handshake.Verdict.accepted))
        #expect(machine.bytesWanted == 0)
    }

    @Test func clientMachine_busyReplyOrVerdictIsBusy_otherVerdictsAreRejections() throws {
        var refused = ClientHandshake(Handshake.Client(key: secret, kind: .control))
        #expect(throws: WireError.busy) { try refused.received(Handshake.Server.refusal(.busy)) }

        func afterReply(kind: ConnectionKind) throws -> ClientHandshake {
            var machine = ClientHandshake(Handshake.Client(key: secret, kind: kind))
            let hello = machine.hello
            var (parsed, length) = try Handshake.Hello.parseFixed(Array(hello.prefix(Handshake.helloFixedSize)))
            parsed.context = Array(hello.suffix(length))
            _ = try machine.received(Handshake.Server(key: secret, hello: parsed).reply)
            return machine
        }
        var busy = try afterReply(kind: .control)
        #expect(throws: WireError.busy) { try busy.received([Handshake.Verdict.busy]) }
        var answering = try afterReply(kind: .control)
        #expect(throws: WireError.authenticationFailed("the worker rejected this key")) {
            try answering.received([Handshake.Verdict.acceptedAnswering])
        }
        var rank = try afterReply(kind: .rank)
        let step = try rank.received([Handshake.Verdict.acceptedAnswering])
        guard case .accepted(_, let verdict) = step else {
            Issue.record("a rank connection's verdict 2 gave \(step)")
            return
        }
        #expect(verdict == Handshake.Verdict.acceptedAnswering)
    }
}
