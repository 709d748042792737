import Foundation
import Testing

@testable import DistrCore

@Suite struct StdinTests {
    /// Runs `distr-master` on `cluster` with `input` written to its stdin (then closed) from
    /// another thread, so that input larger than a pipe does not block the test.
    func master(_ cluster: TestCluster, _ arguments: [String], input: [UInt8]) throws -> MasterRun {
        let pipe = try FD.pipe()
        let process: TestProcess
        do {
            process = try TestProcess(
                [Binaries.master, arguments[0], "--peers", cluster.peersFile, "--secret-file", cluster.secretFile] + arguments.dropFirst(),
                directory: cluster.root.path, stdin: pipe.read)
        } catch {
            FD.close(pipe.read)
            FD.close(pipe.write)
            throw error
        }
        FD.close(pipe.read)
        Thread {
            try? FD.writeAll(pipe.write, input)  // The master may exit before reading it all: that is the test's to judge.
            FD.close(pipe.write)
        }.start()
        return TestProcess.run(process)
    }

    @Test func stdin_reachesPythonInputAtRankZeroOnly() throws {
        try withTestCluster(workers: 2) { cluster in
            let program = """
                import os, sys
                if os.environ["DISTR_NODE_ID"] == "0":
                    print("rank 0 got", repr(input()))
                else:
                    print("rank 1 read", repr(sys.stdin.read()))
                """
            let run = try master(cluster, ["run", "--stdin", "python3", "-c", program], input: Array("hello from the master\n".utf8))
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.contains("[0] rank 0 got 'hello from the master'\n"), "\(run.stdout)")
            #expect(run.stdout.contains("[1] rank 1 read ''\n"), "\(run.stdout)")
        }
    }

    @Test func stdinAll_reachesEveryRank() throws {
        try withTestCluster(workers: 3) { cluster in
            let run = try master(cluster, ["exec", "--stdin", "all", "--", "cat"], input: Array("one line for all\n".utf8))
            #expect(run.status == 0, "\(run.stderr)")
            for rank in 0..<3 { #expect(run.stdout.contains("[\(rank)] one line for all\n"), "\(run.stdout)") }
        }
    }

    @Test func stdin_largeInputArrivesWhole() throws {
        try withTestCluster(workers: 1) { cluster in
            // 6 MiB: a block of a prime length repeated, so a lost or repeated piece changes the hash.
            let block = (0..<4099).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
            let input = Array(repeatElement(block, count: (6 << 20) / block.count).joined())
            // The expected hash from the system's sha256sum: cheap, unlike SHA-256 in a debug build.
            let file = cluster.root.path + "/input.bin"
            try FileIO.write(file, input, mode: 0o644, exclusive: false)
            let local = TestProcess.run(try TestProcess(["/usr/bin/sha256sum", file]))
            let expected = try #require(local.stdout.split(separator: " ").first.map(String.init))
            let hashed = try master(cluster, ["exec", "--stdin", "--", "sha256sum"], input: input)
            #expect(hashed.status == 0, "\(hashed.stderr)")
            #expect(hashed.stdout == "[0] \(expected)  -\n", "\(hashed.stdout)")
        }
    }

    @Test func stdin_badValueIsAUsageError() throws {
        let run = try TestProcess.master(["exec", "--stdin=some", "--hosts", "h", "--", "true"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("--stdin takes 'all' or nothing (rank 0), not 'some'"), "\(run.stderr)")
    }
}
