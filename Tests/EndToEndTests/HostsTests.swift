import Foundation
import Testing

@testable import DistrCore

@Suite struct HostsTests {
    /// A port that refuses connections: bound and never listening, kept (no one else can take
    /// it) until the caller closes `fd`.
    func deadPort() throws -> (fd: Int32, port: Int) {
        let (fd, address) = try TCPSocket.bind(host: "127.0.0.1", port: 0)
        return (fd, address.port)
    }

    @Test func hostList_expandsPortRangesOnTheCommandLine() throws {
        try withTestCluster(workers: 2) { cluster in
            let ports = cluster.workers.map { String($0.port) }
            let run = try TestProcess.master([
                "exec", "--hosts", "127.0.0.1:[\(ports.joined(separator: ","))]", "--secret-file", cluster.secretFile, "--",
                "echo node $DISTR_NODE_ID of $DISTR_N_NODE",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.contains("[0] node 0 of 2\n") && run.stdout.contains("[1] node 1 of 2\n"), "\(run.stdout)")
        }
    }

    @Test func badHostList_isAUsageErrorNamingTheColumn() throws {
        let run = try TestProcess.master(["exec", "--hosts", "rpi-[3-1]", "--", "true"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("--hosts 'rpi-[3-1]', column 6: range 3-1 is reversed; write 1-3"), "\(run.stderr)")
    }

    @Test func skipUnreachable_runsOnTheReachableNodesRenumbered() throws {
        try withTestCluster(workers: 2) { cluster in
            let dead = try deadPort()
            defer { FD.close(dead.fd) }
            let hosts = "\(cluster.workers[0].peer),127.0.0.1:\(dead.port),\(cluster.workers[1].peer)"
            let outputs = cluster.root.path + "/outputs"
            let run = try TestProcess.master([
                "exec", "--hosts", hosts, "--secret-file", cluster.secretFile, "--connect-timeout", "2", "--skip-unreachable",
                "--output-dir", outputs, "--", "echo node $DISTR_NODE_ID of $DISTR_N_NODE",
            ])
            // The files of the ranks that ran, none for the rank planned on the skipped node.
            let files = try FileManager.default.contentsOfDirectory(atPath: outputs).sorted()
            #expect(files == ["0.err", "0.out", "1.err", "1.out"])
            #expect(try String(contentsOfFile: outputs + "/1.out", encoding: .utf8) == "node 1 of 2\n")
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.contains("[0] node 0 of 2\n") && run.stdout.contains("[1] node 1 of 2\n"), "\(run.stdout)")
            let skipped = run.stderr.split(separator: "\n").filter { $0.contains("skipping") }
            #expect(skipped.count == 1, "\(run.stderr)")
            #expect(
                skipped.first?.hasPrefix("distr: skipping 1 unreachable node(s) of 3: node 127.0.0.1:\(dead.port): connection refused") == true,
                "\(run.stderr)")
            #expect(run.stderr.contains("2 rank(s) on 2 node(s): 2 ok"), "\(run.stderr)")

            // Without the flag the same list fails, nothing started.
            let strict = try TestProcess.master([
                "exec", "--hosts", hosts, "--secret-file", cluster.secretFile, "--connect-timeout", "2", "--", "echo ran",
            ])
            #expect(strict.status == 69)
            #expect(!strict.stdout.contains("ran"))
            #expect(strict.stderr.contains("1 of 3 node(s) could not be reached; nothing was started"), "\(strict.stderr)")
        }
    }

    @Test func skipUnreachable_withNoNodeReachable_fails69() throws {
        let dead = try deadPort()
        defer { FD.close(dead.fd) }
        try withTemporaryDirectory { directory in
            try ClusterSecret.generate(path: directory.path + "/secret")
            let run = try TestProcess.master(
                ["exec", "--hosts", "127.0.0.1:\(dead.port)", "--connect-timeout", "1", "--skip-unreachable", "--", "true"],
                environment: ["DISTR_SECRET_FILE": directory.path + "/secret"])
            #expect(run.status == 69)
            #expect(run.stderr.contains("1 of 1 node(s) could not be reached; nothing was started"), "\(run.stderr)")
        }
    }

    /// Runs `cc` with these arguments in `directory`; false when it failed.
    func compile(_ arguments: [String], in directory: String) throws -> Bool {
        let run = try TestProcess(["/usr/bin/cc"] + arguments, directory: directory)
        return run.wait(timeout: 60) == .exited(0)
    }

    @Test(
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: "/usr/bin/cc"), "needs /usr/bin/cc to build a program whose library is then removed"))
    func missingSharedLibrary_isNamedWithTheNodeAndTheFix() throws {
        try withTestCluster(workers: 1) { cluster in
            let directory = cluster.root.path
            try FileIO.write(directory + "/gone.c", Array("int gone(void) { return 7; }\n".utf8), mode: 0o644, exclusive: false)
            try FileIO.write(directory + "/prog.c", Array("int gone(void);\nint main(void) { return gone(); }\n".utf8), mode: 0o644, exclusive: false)
            try #require(try compile(["-shared", "-fPIC", "-o", "libgone.so", "gone.c"], in: directory))
            try #require(try compile(["-o", "prog", "prog.c", "-L.", "-lgone"], in: directory))
            try FileManager.default.removeItem(atPath: directory + "/libgone.so")
            let run = try cluster.master(["run", "./prog"], directory: directory)
            #expect(run.status == 127, "\(run.stderr)")
            let peer = cluster.workers[0].peer
            #expect(
                run.stderr.contains(
                    "rank 0 on \(peer) could not start: shared library libgone.so is missing on \(peer); install the package that provides it on that node, or link the program statically"
                ), "\(run.stderr)")
        }
    }
}
