import Foundation
import Testing

@testable import DistrCore

@Suite(.hangGuard) struct ShippingTests {
    init() { Signals.ignorePipe() }

    /// A frame carries many small files, each open until the frame goes out; the master keeps
    /// only as many open as its descriptor limit allows (it ran out: EMFILE), and opens no
    /// empty file.
    @Test func manySmallAndEmptyFiles_shipUnderALowDescriptorLimit() throws {
        try withTestCluster(workers: 2) { cluster in
            for index in 0..<300 { try cluster.root.write("many/f\(index)", "x") }
            for index in 0..<300 { try cluster.root.write("many/e\(index)", "") }
            // 48 descriptors: the master's own needs, and 12 (a quarter) for the kept files.
            let master = try TestProcess(
                [
                    "/bin/sh", "-c", "ulimit -n 48 && exec \"$0\" \"$@\"", Binaries.master, "exec", "--peers", cluster.peersFile,
                    "--secret-file", cluster.secretFile, "--file", "many", "--", "cat many/f* | wc -c; ls many | wc -l",
                ], directory: cluster.root.path)
            let run = TestProcess.run(master)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdoutLines.sorted() == ["[0] 300", "[0] 600", "[1] 300", "[1] 600"], "\(run.stdout)")
        }
    }

    /// The test plays the worker, so that the file can vanish exactly between the master's
    /// hashing and its sending.
    @Test func fileThatVanishesBeforeItIsSent_endsTheJobWithAClearErrorInsteadOfHanging() throws {
        let dir = try TemporaryDirectory()
        let secretPath = dir.path + "/secret"
        try ClusterSecret.generate(path: secretPath)
        let secret = try ClusterSecret.load(path: secretPath)
        try dir.write("data.bin", String(repeating: "x", count: 100_000))
        let (listener, address) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        defer { FD.close(listener) }
        let master = try TestProcess([
            Binaries.master, "exec", "--hosts", "127.0.0.1:\(address.port)", "--secret-file", secretPath, "--file",
            dir.path + "/data.bin", "--", "true",
        ])

        let fd = try TCPSocket.accept(listener)
        let (_, keys) = try Connection.serverHandshake(fd: fd, deadline: .after(10)) { _ in secret }
        let connection = try Connection.accept(fd: fd, peer: "master", keys: keys, headerOnlyTypes: [ControlMessage.fileDataType])
        defer { connection.close() }
        guard case .jobStart(let spec) = try connection.receiveMessage(idle: .after(10)) else {
            Issue.record("expected a job description")
            return
        }
        #expect(spec.manifest.map(\.path) == ["data.bin"])
        unlink(dir.path + "/data.bin")
        try connection.send(.filesNeeded([0]))

        // The master tells the worker why it gives up, then says so and exits.
        let cancel = try connection.receiveMessage(idle: .after(10))
        #expect(cancel.name == "cancel" && "\(cancel)".contains("data.bin"), "\(cancel)")
        let run = TestProcess.run(master, timeout: 20)
        #expect(run.status == 69)
        #expect(run.stderr.contains("cannot read '\(dir.path)/data.bin' to ship it"), "\(run.stderr)")
    }

    /// A bundle large enough for the master's digest cache, of a file the cache does not know:
    /// the manifest has no digest for it, its bytes go out while the master hashes it, and its
    /// digest follows them in a `fileDigests` frame (protocol 5). The test plays the worker.
    @Test func largeFileNotHashedBefore_isSentBeforeItsDigest_whichFollowsItsLastFrame() throws {
        let dir = try TemporaryDirectory()
        let secretPath = dir.path + "/secret"
        try ClusterSecret.generate(path: secretPath)
        let secret = try ClusterSecret.load(path: secretPath)
        let size = DigestCache.worthAbove + 123_457
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        try FileIO.write(dir.path + "/big.bin", bytes, mode: 0o644, exclusive: true)
        try dir.write("small.txt", "hashed first\n")
        let (listener, address) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        defer { FD.close(listener) }
        let master = try TestProcess(
            [
                Binaries.master, "exec", "--hosts", "127.0.0.1:\(address.port)", "--secret-file", secretPath, "--file",
                dir.path + "/big.bin", "--file", dir.path + "/small.txt", "--", "true",
            ], environment: ["XDG_CACHE_HOME": dir.path + "/cache"])

        let fd = try TCPSocket.accept(listener)
        let (_, keys) = try Connection.serverHandshake(fd: fd, deadline: .after(10)) { _ in secret }
        let connection = try Connection.accept(fd: fd, peer: "master", keys: keys, headerOnlyTypes: [ControlMessage.fileDataType])
        defer { connection.close() }
        func next() throws -> ControlMessage {
            while true {
                let message = try connection.receiveMessage(idle: .after(20))
                if message != .heartbeat { return message }
            }
        }
        guard case .jobStart(let spec) = try next() else {
            Issue.record("expected a job description")
            return
        }
        #expect(spec.manifest.map(\.path) == ["big.bin", "small.txt"])
        #expect(spec.manifest.map(\.digestFollows) == [true, false], "the large file's digest follows its bytes")
        #expect(spec.manifest[1].digest == SHA256.hash(Array("hashed first\n".utf8)))
        try connection.send(.filesNeeded([0, 1]))
        var received: [UInt8] = []
        var digests: [FileDigest]?
        while received.count < size + 13 {
            switch try next() {
            case .fileData(let chunk):
                received += chunk
                if received.count >= size && digests == nil {
                    guard case .fileDigests(let after) = try next() else {
                        Issue.record("expected the big file's digest right after its last bytes")
                        return
                    }
                    digests = after
                }
            case let other:
                Issue.record("unexpected \(other.name)")
                return
            }
        }
        #expect(received == bytes + Array("hashed first\n".utf8))
        #expect(digests == [FileDigest(index: 0, digest: SHA256.hash(bytes))])
        try connection.send(.failure("the test has seen enough"))
        let run = TestProcess.run(master, timeout: 30)
        #expect(run.status != 0)
    }

    /// The same with real workers: the files whose digests followed arrive whole, verified,
    /// and enter each worker's cache under their digest.
    @Test func largeBundle_withDigestsAfterTheBytes_arrivesWholeAndIsCached() throws {
        let cluster = try TestCluster(workers: 2)
        let dir = try TemporaryDirectory()
        var digests: [[UInt8]] = []
        for index in 0..<3 {
            let bytes = (0..<(DigestCache.worthAbove / 3 + 70_001 * index)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index * 7) }
            digests.append(SHA256.hash(bytes))
            try FileIO.makeDirectories(dir.path + "/data")
            try FileIO.write(dir.path + "/data/part\(index)", bytes, mode: 0o644, exclusive: true)
        }
        let run = try cluster.master(
            ["exec", "--file", dir.path + "/data", "--", "sha256sum data/part0 data/part1 data/part2 | cut -c1-64"],
            environment: ["XDG_CACHE_HOME": dir.path + "/cache"])
        #expect(run.status == 0, "\(run.stderr)")
        for node in 0..<2 {
            #expect(run.stdoutLines.filter { $0.hasPrefix("[\(node)] ") }.map { String($0.dropFirst(4)) } == digests.map(\.hex), "\(run.stdout)")
        }
        for worker in cluster.workers {
            for digest in digests { #expect(FileIO.exists(worker.workDirectory + "/.distr-cache/" + digest.hex)) }
        }
    }

    /// The test plays the master with an on-path attacker: the raw file bytes are not covered by
    /// the frame's MAC, only by the digest in the authenticated manifest.
    @Test func fileBytesAlteredOnTheWire_areRefusedNamingTheFile_neverCached_andTheWorkerKeepsServing() throws {
        let cluster = try TestCluster(workers: 1)
        let worker = cluster.workers[0]
        let secret = try ClusterSecret.load(path: cluster.secretFile)
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: worker.port, timeout: 5)
        let connection = try Connection.client(
            fd: fd, peer: "test", key: secret, kind: .control, timeout: 5, headerOnlyTypes: [ControlMessage.fileDataType])
        defer { connection.close() }
        func next() throws -> ControlMessage {
            while true {
                let message = try connection.receiveMessage(idle: .after(20))
                if message != .workerHeartbeat { return message }
            }
        }
        let real = Array("the bytes the master hashed\n".utf8)
        let entry = ManifestEntry(path: "lib/data.txt", mode: 0o644, size: real.count, digest: SHA256.hash(real))
        let spec = JobSpec(
            jobID: "altered", arguments: ["true"], environment: [], localRanks: [0],
            placements: [RankPlacement(rank: 0, host: "127.0.0.1", port: worker.port, worker: 0, label: "x")], keepDirectory: false,
            jobKey: randomBytes(32), manifest: [entry], workerIndex: 0)
        try connection.send(.jobStart(spec))
        #expect(try next() == .filesNeeded([0]))
        var altered = real
        altered[4] ^= 0x20
        try connection.send(.fileData(altered))
        guard case .failure(let reason) = try next() else {
            Issue.record("expected a refusal")
            return
        }
        #expect(reason.contains("'lib/data.txt' does not match its SHA-256 digest"), "\(reason)")
        #expect(worker.process.stderr.waitFor("job altered from 127.0.0.1"))
        #expect(worker.process.stderr.waitFor("refused: bundle refused: 'lib/data.txt' does not match its SHA-256 digest"))
        #expect(!FileIO.exists(worker.workDirectory + "/.distr-cache/" + entry.digest.hex))
        #expect(cluster.leftoverJobDirectories.isEmpty)

        // The worker still serves, and the real bytes then arrive whole.
        let dir = try TemporaryDirectory()
        try dir.write("data.txt", String(decoding: real, as: UTF8.self))
        let good = try cluster.master(["exec", "--file", dir.path + "/data.txt", "--", "cat data.txt"])
        #expect(good.stdout == "[0] the bytes the master hashed\n", "\(good.stderr)")
        #expect(FileIO.exists(worker.workDirectory + "/.distr-cache/" + entry.digest.hex))
    }

    @Test func rerun_borrowsTheCachedFile_andARankThatRewritesIt_doesNotChangeTheNextJobsCopy() throws {
        let cluster = try TestCluster(workers: 1)
        let dir = try TemporaryDirectory()
        try dir.write("data.txt", "original\n")
        let file = dir.path + "/data.txt"
        let first = try cluster.master(["exec", "--file", file, "--", "cat data.txt"])
        #expect(first.stdout == "[0] original\n", "\(first.stderr)")
        // From the cache, lent: a second name of the cached file, not a copy. The rank then
        // rewrites it in place.
        let second = try cluster.master([
            "exec", "--file", file, "--", "stat -c %h data.txt && printf CHANGED | dd of=data.txt conv=notrunc status=none",
        ])
        #expect(second.stdout == "[0] 2\n", "\(second.stderr)")
        #expect(cluster.workers[0].process.stderr.waitFor("1 file(s) (1 from cache)"))
        let third = try cluster.master(["exec", "--file", file, "--", "cat data.txt"])
        #expect(third.stdout == "[0] original\n", "\(third.stderr)")
    }
}
