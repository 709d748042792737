import Foundation
import Testing

@testable import DistrCore

/// `distr-master shell` driven through a pipe, as a script would, against real workers.
@Suite(.hangGuard) struct ShellTests {
    init() { Signals.ignorePipe() }

    /// A shell whose stdin is a pipe the test writes lines into.
    final class Session: Sendable {
        let process: TestProcess
        let input: Int32

        init(_ cluster: TestCluster) throws {
            let pipe = try FD.pipe()
            process = try TestProcess(
                [Binaries.master, "shell", "--peers", cluster.peersFile, "--secret-file", cluster.secretFile], directory: cluster.root.path,
                stdin: pipe.read)
            FD.close(pipe.read)
            input = pipe.write
        }

        func send(_ lines: String) throws { try FD.writeAll(input, Array(lines.utf8)) }

        /// Closes stdin (end of input) and waits for the shell to leave.
        func finish() -> MasterRun {
            FD.close(input)
            return TestProcess.run(process)
        }
    }

    @Test func shell_gathersIdenticalOutput_separatesTheRest_selectsById_andByName() throws {
        try withTestCluster(workers: 3) { cluster in
            let session = try Session(cluster)
            try session.send(
                """
                echo same
                if [ "$DISTR_NODE_ID" = 1 ]; then echo odd; exit 3; else echo even; fi
                @0,2 echo subset
                @\(cluster.workers[1].peer) echo byname
                @1-2,0 echo all three
                exit
                echo never

                """)
            let run = session.finish()
            #expect(run.status == 0, "stderr: \(run.stderr)")
            #expect(run.stdout.contains("----- [0-2] -----\nsame\n"), "stdout: \(run.stdout)")
            #expect(run.stdout.contains("----- [0,2] -----\neven\n----- [1] exit 3 -----\nodd\n"), "stdout: \(run.stdout)")
            #expect(run.stdout.contains("----- [0,2] -----\nsubset\n"), "stdout: \(run.stdout)")
            #expect(run.stdout.contains("----- [1] -----\nbyname\n"), "stdout: \(run.stdout)")
            #expect(run.stdout.contains("----- [0-2] -----\nall three\n"), "stdout: \(run.stdout)")
            #expect(!run.stdout.contains("never"), "'exit' leaves: \(run.stdout)")
        }
    }

    /// As `sh` does, the shell leaves with its last line's status: the highest exit code of the
    /// nodes, 64 after a line it did not understand, and `exit` keeps it.
    @Test func shell_exitStatus_isTheLastLines() throws {
        try withTestCluster(workers: 2) { cluster in
            for (script, expected) in [
                ("@1 exit 4\n", Int32(4)), ("echo x; exit $DISTR_NODE_ID\nexit\n", 1), ("@1 exit 4\necho ok\n", 0), ("true\n@9 echo\n", 64),
                ("", 0),
            ] {
                let session = try Session(cluster)
                try session.send(script)
                let run = session.finish()
                #expect(run.status == expected, "\(script.debugDescription): stdout \(run.stdout) stderr \(run.stderr)")
            }
        }
    }

    @Test func shell_badSelectors_areReportedAndTheShellGoesOn() throws {
        try withTestCluster(workers: 2) { cluster in
            let session = try Session(cluster)
            try session.send("@9 echo no\n@nosuchhost echo no\n@\n@ echo no\n@0\n@1-0 echo no\n@0,,1 echo no\necho yes\n")
            let run = session.finish()
            #expect(run.status == 0)
            #expect(run.stdout == "----- [0-1] -----\nyes\n", "nothing else ran: \(run.stdout)")
            #expect(run.stderr.contains("node 9 in '@9' does not exist: the node ids are 0-1, in peers order"), "stderr: \(run.stderr)")
            #expect(run.stderr.contains("no node is named 'nosuchhost' (in '@nosuchhost'); the nodes are: 0 \(cluster.workers[0].peer)"))
            #expect(run.stderr.components(separatedBy: "'@' needs node ids or names right after it").count == 3, "stderr: \(run.stderr)")
            #expect(run.stderr.contains("'@0' needs a command after it"))
            #expect(run.stderr.contains("range '1-0' in '@1-0' runs backwards; write '0-1'"))
            #expect(run.stderr.contains("empty item in '@0,,1'"))
        }
    }

    @Test func shell_stoppedWorker_isReportedOnceSkipped_andRejoinsWhenRestarted() throws {
        try withTestCluster(workers: 2) { cluster in
            let session = try Session(cluster)
            let stopped = cluster.workers[1]
            try session.send("echo a\n")
            try #require(session.process.stdout.waitFor("----- [0-1] -----\na\n"), "stdout: \(session.process.stdout.text)")
            stopped.stop()
            try session.send("echo b\necho c\n")
            try #require(
                session.process.stdout.waitFor("----- [0] -----\nc\n"),
                "stdout: \(session.process.stdout.text) stderr: \(session.process.stderr.text)")
            #expect(session.process.stdout.text.contains("----- [0] -----\nb\n"))
            let stderr = session.process.stderr.text
            #expect(stderr.contains("node 1 (\(stopped.peer)) unreachable: "), "stderr: \(stderr)")
            #expect(stderr.contains("; skipped until it answers"), "stderr: \(stderr)")
            #expect(stderr.components(separatedBy: "unreachable: ").count == 2, "reported once: \(stderr)")
            let restarted = try TestWorker(
                secretFile: cluster.secretFile, workDirectory: cluster.root.path + "/work1", arguments: ["--port", "\(stopped.port)"])
            defer { restarted.stop() }
            try session.send("echo d\n")
            try #require(session.process.stdout.waitFor("----- [0-1] -----\nd\n"), "stdout: \(session.process.stdout.text)")
            #expect(session.process.stderr.text.contains("node 1 (\(stopped.peer)) is back"), "stderr: \(session.process.stderr.text)")
            let run = session.finish()
            #expect(run.status == 0)
        }
    }

    @Test func shell_ctrlC_endsTheCommandOnEveryNode_andKeepsTheShell() throws {
        try withTestCluster(workers: 2) { cluster in
            let session = try Session(cluster)
            let flags = cluster.root.path + "/started"
            try session.send("touch \(flags).$DISTR_NODE_ID; sleep 1000\n")
            // Both nodes run the command once both files exist.
            let deadline = Clock.now + 30
            while !(FileManager.default.fileExists(atPath: flags + ".0") && FileManager.default.fileExists(atPath: flags + ".1")) {
                try #require(Clock.now < deadline, "the command did not start; stderr: \(session.process.stderr.text)")
                Deadline.pause(0.02)
            }
            session.process.signal(SIGINT)
            try #require(session.process.stderr.waitFor("interrupted: the command was ended on [0-1]"), "stderr: \(session.process.stderr.text)")
            // stdout and stderr are read separately: the block may arrive after the note.
            #expect(session.process.stdout.waitFor("----- [0-1] killed by signal"), "stdout: \(session.process.stdout.text)")
            // Ctrl-C with nothing running does nothing; the next command runs.
            session.process.signal(SIGINT)
            try session.send("echo after\n")
            try #require(session.process.stdout.waitFor("----- [0-1] -----\nafter\n"), "stdout: \(session.process.stdout.text)")
            let run = session.finish()
            #expect(run.status == 0, "stderr: \(run.stderr)")
        }
    }

    @Test func shell_withACommandOnItsLine_isAUsageError() throws {
        let run = try TestProcess.master(["shell", "--local", "1", "uptime"])
        #expect(run.status == ExitCode.usage)
        #expect(run.stderr.contains("shell takes no command ('uptime'): type commands at its prompt or pipe them in"))
    }
}
