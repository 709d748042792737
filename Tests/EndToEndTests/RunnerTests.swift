import Foundation
import Testing

@testable import DistrCore

@Suite(.hangGuard) struct RunnerTests {
    init() { Signals.ignorePipe() }

    @Test func local4_labelsEveryRankAndSetsTheEnvironment() throws {
        // `--env PASSED` passes the master's own value on, as `mpirun -x PASSED` does.
        let run = try TestProcess.master(
            [
                "run", "--local", "4", "--env", "EXTRA=yes", "--env", "PASSED", "--", "sh", "-c",
                "echo \"id=$DISTR_NODE_ID n=$DISTR_N_NODE job=$DISTR_JOB_ID py=$PYTHONUNBUFFERED extra=$EXTRA passed=$PASSED dir=$(pwd)\"; echo to-stderr >&2",
            ], environment: ["PASSED": "from the master"])
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.stdoutLines.sorted()
        #expect(lines.count == 4)
        var jobs = Set<String>()
        var directories = Set<String>()
        for (rank, line) in lines.enumerated() {
            #expect(line.hasPrefix("[\(rank)] id=\(rank) n=4 job="), "\(line)")
            #expect(line.contains("py=1 extra=yes passed=from the master dir=/"), "\(line)")
            jobs.insert(String(line.split(separator: " ")[3]))
            directories.insert(String(line.split(separator: "dir=").last ?? ""))
        }
        #expect(jobs.count == 1)
        #expect(directories.count == 4)
        #expect(run.stderr.contains("[2] to-stderr"))
        #expect(!run.stdout.contains("to-stderr"))
        #expect(run.stderr.contains("4 rank(s) on 4 node(s): 4 ok, 0 failed"))
    }

    @Test func ranks_haveDevNullStdinAndTheirOwnProcessGroup() throws {
        let run = try TestProcess.master([
            "exec", "--local", "2", "--", "echo stdin=$(readlink /proc/self/fd/0) group=$(cut -d' ' -f5 /proc/$$/stat) self=$$",
        ])
        #expect(run.status == 0)
        // One line per rank, or the loop below checks nothing.
        #expect(run.stdoutLines.count == 2, "\(run.stdout)")
        for line in run.stdoutLines {
            let fields = line.split(separator: " ")
            try #require(fields.count == 4, "\(line)")
            #expect(fields[1] == "stdin=/dev/null", "\(line)")
            #expect(fields[2].dropFirst(6) == fields[3].dropFirst(5), "rank is not its own group leader: \(line)")
        }
    }

    @Test func ipv6_workerAndPeersInBrackets() throws {
        try withTemporaryDirectory { root in
            try ClusterSecret.generate(path: root.path + "/secret")
            let worker = try TestWorker(secretFile: root.path + "/secret", workDirectory: root.path + "/work", bind: "::1")
            defer { worker.stop() }
            #expect(worker.process.stdout.text.hasPrefix("distr-worker listening on [::1]:"), "\(worker.process.stdout.text)")
            #expect(worker.peer == "[::1]:\(worker.port)")
            let port = worker.port
            let run = try TestProcess.master(["exec", "--hosts", "[::1]:\(port)", "--secret-file", root.path + "/secret", "--", "echo $DISTR_HOST"])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout == "[0] [::1]:\(port)\n")
        }
    }

    @Test func bundle_aMultiChunkFileArrivesIntact() throws {
        try withTestCluster(workers: 2) { cluster in
            try withTemporaryDirectory { project in
                var generator = SystemRandomNumberGenerator()
                let bytes = (0..<(3 << 20) + 12345).map { _ in UInt8.random(in: 0...255, using: &generator) }
                try FileIO.write(project.path + "/blob.bin", bytes, mode: 0o600, exclusive: true)
                let run = try cluster.master(["run", "--file", "blob.bin", "sha256sum", "blob.bin"], directory: project.path)
                #expect(run.status == 0, "\(run.stderr)")
                let digest = SHA256.hash(bytes).hex
                #expect(run.stdoutLines.sorted() == ["[0] \(digest)  blob.bin", "[1] \(digest)  blob.bin"])
            }
        }
    }

    @Test func cache_shipsAFileOnceAndNeverServesARanksChanges() throws {
        try withTestCluster(workers: 1) { cluster in
            let log = cluster.workers[0].process.stderr
            let project = try TemporaryDirectory()
            try project.write("data.txt", "first\n")
            let first = try cluster.master(["run", "--file", "data.txt", "cat", "data.txt"], directory: project.path)
            #expect(first.stdout == "[0] first\n")
            #expect(log.waitFor("1 file(s) (0 from cache)"))
            // The second job gets it from the cache, and its rank changes its own copy.
            let second = try cluster.master(
                ["run", "--file", "data.txt", "sh", "-c", "cat data.txt; echo changed > data.txt"], directory: project.path)
            #expect(second.stdout == "[0] first\n")
            #expect(log.waitFor("1 file(s) (1 from cache)"))
            let third = try cluster.master(["run", "--file", "data.txt", "cat", "data.txt"], directory: project.path)
            #expect(third.stdout == "[0] first\n")
            // A changed file has another digest: shipped again.
            try project.write("data.txt", "second\n")
            let fourth = try cluster.master(["run", "--file", "data.txt", "cat", "data.txt"], directory: project.path)
            #expect(fourth.stdout == "[0] second\n")
            #expect(log.waitFor(count: 2, of: "1 file(s) (0 from cache)"))
        }
    }

    @Test func cache_isOffWithCacheBytesZero() throws {
        try withTestCluster(workers: 1, workerArguments: ["--cache-bytes", "0"]) { cluster in
            try withTemporaryDirectory { project in
                try project.write("data.txt", "x\n")
                for _ in 0..<2 {
                    let run = try cluster.master(["run", "--file", "data.txt", "cat", "data.txt"], directory: project.path)
                    #expect(run.stdout == "[0] x\n")
                }
                #expect(cluster.workers[0].process.stderr.waitFor(count: 2, of: "1 file(s) (0 from cache)"))
                #expect(!FileIO.exists(cluster.workers[0].workDirectory + "/.distr-cache"))
            }
        }
    }

    @Test func peersFile_slotsExpandInPeersOrderAndDistrHostIsThePeerAsWritten() throws {
        try withTestCluster(workers: 2, slots: [2, 1]) { cluster in
            let run = try cluster.master(["run", "--", "sh", "-c", "echo $DISTR_HOST $DISTR_N_NODE"])
            #expect(run.status == 0, "\(run.stderr)")
            let lines = Set(run.stdoutLines)
            let first = cluster.workers[0].peer
            let second = cluster.workers[1].peer
            #expect(lines == ["[0] \(first) 3", "[1] \(first) 3", "[2] \(second) 3"])
        }
    }

    @Test func shipsProgramFilesAndDirectoriesWithTheirModes() throws {
        try withTestCluster(workers: 2) { cluster in
            try withTemporaryDirectory { project in
                try project.write("prog.sh", "#!/bin/sh\nstat -c '%a %n' prog.sh data.csv lib/sub/x lib/tool\ncat data.csv lib/sub/x\n", mode: 0o755)
                try project.write("data.csv", "a,b\n", mode: 0o640)
                try project.write("lib/sub/x", "deep\n", mode: 0o600)
                try project.write("lib/tool", "t\n", mode: 0o711)
                let run = try cluster.master(["run", "--file", "data.csv", "--file=lib/", "./prog.sh"], directory: project.path)
                #expect(run.status == 0, "\(run.stderr)")
                for rank in 0..<2 {
                    for expected in ["755 prog.sh", "640 data.csv", "600 lib/sub/x", "711 lib/tool", "a,b", "deep"] {
                        #expect(run.stdoutLines.contains("[\(rank)] \(expected)"), "\(run.stdout)")
                    }
                }
            }
        }
    }

    @Test func exitStatus_isTheHighestRankStatusWithKeepGoing() throws {
        let run = try TestProcess.master(["run", "--local", "4", "--keep-going", "--", "sh", "-c", "exit $DISTR_NODE_ID"])
        #expect(run.status == 3)
        #expect(run.stderr.contains("1 ok, 3 failed"))
        #expect(run.stderr.contains("rank 3 on 127.0.0.1:"))
        #expect(run.stderr.contains("exit 3"))
    }

    @Test func signalledRank_gives128PlusTheSignal() throws {
        let run = try TestProcess.master([
            "run", "--local", "2", "--keep-going", "--", "sh", "-c", "echo last words >&2; [ $DISTR_NODE_ID = 1 ] && kill -9 $$; exit 0",
        ])
        #expect(run.status == 137)
        #expect(run.stderr.contains("killed by signal 9 (SIGKILL)"))
        #expect(run.stderr.contains("  [1] last words"))
    }

    @Test func run_firstFailureEndsTheOtherRanks() throws {
        let run = try TestProcess.master([
            "run", "--local", "3", "--", "sh", "-c", "[ $DISTR_NODE_ID = 0 ] && exit 5; sleep 120",
        ])
        #expect(run.status == 5)
        #expect(run.stderr.contains("ranks [1-2] were ended by distr: rank 0 failed"), "\(run.stderr)")
    }

    @Test func exec_nodesAreIndependent() throws {
        let run = try TestProcess.master([
            "exec", "--local", "2", "--", "if [ $DISTR_NODE_ID = 0 ]; then exit 2; fi; sleep 0.3; echo finished",
        ])
        #expect(run.status == 2)
        #expect(run.stdout.contains("[1] finished"))
    }

    @Test func exec_startsPlainWordsWithoutAShell_andShellSyntaxWithOne() throws {
        try withTestCluster(workers: 1) { cluster in
            let worker = cluster.workers[0].process.pid
            // Plain words: the program is the worker's own child, no /bin/sh between them.
            let plain = try cluster.master(["exec", "--", "grep", "PPid:", "/proc/self/status"])
            #expect(plain.status == 0, "\(plain.stderr)")
            #expect(plain.stdout.split(separator: "\t").last?.hasPrefix("\(worker)\n") == true, "\(plain.stdout) (worker \(worker))")
            // Shell syntax still goes through the shell: expansion, and a builtin.
            let shell = try cluster.master(["exec", "--", "echo", "$DISTR_NODE_ID", "&&", "cd", "/"])
            #expect(shell.status == 0, "\(shell.stderr)")
            #expect(shell.stdout == "[0] 0\n", "\(shell.stdout)")
        }
    }

    @Test func group_printsBlocksInNodeOrder() throws {
        let run = try TestProcess.master([
            "exec", "--local", "3", "--group", "--", "sleep 0.$((3 - DISTR_NODE_ID)); echo a$DISTR_NODE_ID; echo b$DISTR_NODE_ID",
        ])
        #expect(run.status == 0)
        let lines = run.stdoutLines
        #expect(lines.count == 9)
        for rank in 0..<3 {
            #expect(lines[rank * 3].hasPrefix("----- node \(rank) (127.0.0.1:"))
            #expect(lines[rank * 3 + 1] == "a\(rank)")
            #expect(lines[rank * 3 + 2] == "b\(rank)")
        }
    }

    @Test func gather_foldsIdenticalOutput() throws {
        let run = try TestProcess.master([
            "exec", "--local", "4", "--gather", "--", "if [ $DISTR_NODE_ID = 2 ]; then echo odd; else echo same; fi",
        ])
        #expect(run.stdout == "----- [0-1,3] -----\nsame\n----- [2] -----\nodd\n")
    }

    @Test func nonUTF8BytesAndAPartialLastLinePassThrough() throws {
        let run = try TestProcess.master(["exec", "--local", "1", "--", "printf '\\377\\376 bytes\\nno newline'"])
        #expect(run.status == 0)
        #expect(run.stdoutBytes == Array("[0] ".utf8) + [0xff, 0xfe] + Array(" bytes\n[0] no newline\n".utf8))
    }

    @Test func linesFromManyRanksNeverInterleave() throws {
        let run = try TestProcess.master([
            "exec", "--local", "4", "--",
            "i=0; while [ $i -lt 500 ]; do echo rank$DISTR_NODE_ID-line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done",
        ])
        #expect(run.status == 0)
        let lines = run.stdoutLines
        #expect(lines.count == 2000)
        for line in lines {
            let rank = line.dropFirst().prefix { $0 != "]" }
            #expect(line.hasPrefix("[\(rank)] rank\(rank)-line-") && line.hasSuffix("-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), "\(line)")
        }
    }

    @Test func instantRanksOnManyWorkers_neverOvertakeAnotherWorkersJobStart() throws {
        // Ranks that exit at once make the master relay their exits to workers it may not have
        // sent the job to yet; those relays must wait for the job.
        let cluster = try TestCluster(workers: 8)
        for _ in 0..<15 {
            let run = try cluster.master(["exec", "-q", "--", "true"])
            #expect(run.status == 0, "\(run.stderr)")
            if run.status != 0 { break }
        }
    }

    @Test func timeout_endsTheJobWith124() throws {
        let run = try TestProcess.master(["run", "--local", "2", "--timeout", "0.5", "--", "sleep", "120"])
        #expect(run.status == 124)
        #expect(run.stderr.contains("time limit of 0.5 s"))
    }

    @Test func missingProgram_isReportedPerRank() throws {
        let run = try TestProcess.master(["run", "--local", "1", "distr-no-such-program"])
        #expect(run.status == 127)
        #expect(run.stderr.contains("'distr-no-such-program' not found on this node"))
    }

    @Test func keep_leavesTheDirectoryAndSaysWhere() throws {
        try withTestCluster(workers: 1) { cluster in
            let run = try cluster.master(["exec", "--keep", "--", "echo kept > marker"])
            #expect(run.status == 0)
            let kept = try #require(cluster.leftoverJobDirectories.first)
            #expect(run.stderr.contains("job directory kept at \(kept)"))
            #expect(try FileIO.readAll(kept + "/marker") == Array("kept\n".utf8))
        }
    }
}
