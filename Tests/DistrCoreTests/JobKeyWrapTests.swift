import Testing

@testable import DistrCore

/// The per-job key crosses the master–worker connection wrapped under that session's keys: a
/// listener on the wire cannot read it (and so cannot forge rank connections).
@Suite struct JobKeyWrapTests {
    static func spec(key: [UInt8]) -> JobSpec {
        JobSpec(
            jobID: "job-1", arguments: ["./app"], environment: [], localRanks: [0],
            placements: [RankPlacement(rank: 0, host: "10.0.0.1", port: 6969, worker: 0, label: "n0")], keepDirectory: false,
            jobKey: key, manifest: [], workerIndex: 0)
    }

    /// Everything `connection` wrote, as read from the other end of its socket pair.
    static func wireBytes(_ fd: Int32) throws -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while try FD.waitReadable(fd, timeout: 100) {
            let n = try FD.read(fd, into: &chunk)
            if n == 0 { break }
            out += chunk[0..<n]
        }
        return out
    }

    @Test func jobStart_carriesTheJobKeyWrapped_andTheWorkerUnwrapsIt() throws {
        let keys = SessionKeys(send: randomBytes(32), receive: randomBytes(32))
        let mirrored = SessionKeys(send: keys.receive, receive: keys.send)
        let jobKey = randomBytes(32)

        let (masterEnd, wire) = try FD.socketPair()
        defer { FD.close(wire) }
        let master = Connection(fd: masterEnd, peer: "w", keys: keys, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        try master.send(.jobStart(Self.spec(key: jobKey)))
        let bytes = try Self.wireBytes(wire)
        #expect(!bytes.isEmpty)
        #expect(bytes.firstRange(of: jobKey) == nil, "the job key is readable on the wire")

        // The same bytes, read by the worker's side of the session.
        let (replay, workerEnd) = try FD.socketPair()
        defer { FD.close(replay) }
        try FD.writeAll(replay, bytes)
        let worker = Connection(fd: workerEnd, peer: "m", keys: mirrored, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        guard case .jobStart(let received) = try worker.receiveMessage(idle: .after(5)) else {
            Issue.record("expected a job description")
            return
        }
        #expect(received.jobKey == jobKey)
        #expect(received == Self.spec(key: jobKey))
    }

    @Test func wrappedKey_differsPerSessionForTheSameJob() throws {
        let jobKey = randomBytes(32)
        var seen: [[UInt8]] = []
        for _ in 0..<2 {
            let (end, wire) = try FD.socketPair()
            defer { FD.close(wire) }
            let connection = Connection(
                fd: end, peer: "w", keys: SessionKeys(send: randomBytes(32), receive: randomBytes(32)), maxPayload: 1 << 20,
                headerOnlyTypes: [], frameTimeout: 5)
            try connection.send(.jobStart(Self.spec(key: jobKey)))
            seen.append(try Self.wireBytes(wire))
        }
        #expect(seen[0] != seen[1])
    }
}
