import Foundation
import Testing

@testable import DistrCore

/// Python programs under `distr-master run`: how a `.py` is started, which local files travel
/// with it, where `import distr` comes from, and what a failing or interrupted Python rank does.
/// The programs here use nothing of the distr module itself (it is written elsewhere).
@Suite(.hangGuard) struct PythonLaunchTests {
    init() { Signals.ignorePipe() }

    static let note = "(named in the arguments; --no-ship-args to turn off)"

    /// Prints the rank, the program's argv and, for each name, whether that file is in the job
    /// directory.
    static let showArguments = """
        import os, sys
        print(os.environ["DISTR_NODE_ID"], sys.argv, [name for name in sys.argv[1:] if os.path.isfile(name)])
        """

    @Test func pyProgramThatIsNotExecutable_runsWithPython3OnEveryRank() throws {
        try withTemporaryDirectory { project in
            try project.write("prog.py", Self.showArguments)
            let run = try TestProcess.master(["run", "--local", "2", "prog.py", "x", "-y"], directory: project.path)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdoutLines.sorted() == ["[0] 0 ['prog.py', 'x', '-y'] []", "[1] 1 ['prog.py', 'x', '-y'] []"])
        }
    }

    @Test func executablePyProgramWithShebang_runsAsItIs() throws {
        try withTemporaryDirectory { project in
            try project.write("tool.py", "#!/bin/sh\necho \"sh ran $0 $1\"\n", mode: 0o755)
            let run = try TestProcess.master(["run", "--local", "1", "tool.py", "a"], directory: project.path)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout == "[0] sh ran ./tool.py a\n")
        }
    }

    @Test func localProgramThatIsNotExecutable_isAUsageErrorWithTheHint() throws {
        try withTemporaryDirectory { project in
            try project.write("prog", "echo hi\n")
            try project.write("script", "#!/usr/bin/env bash\necho hi\n")
            let plain = try TestProcess.master(["run", "--local", "2", "prog"], directory: project.path)
            #expect(plain.status == 64)
            #expect(
                plain.stderr
                    == "distr: 'prog' is not executable; chmod +x prog, or name its interpreter: distr-master run INTERPRETER prog\n")
            let script = try TestProcess.master(["run", "--local", "2", "./script"], directory: project.path)
            #expect(script.status == 64)
            #expect(script.stderr.contains("chmod +x ./script, or name its interpreter: distr-master run bash ./script\n"), "\(script.stderr)")
        }
    }

    @Test func absolutePyProgramThatIsNotExecutableOnTheNode_failsWithTheHint() throws {
        try withTemporaryDirectory { project in
            try project.write("prog.py", "print(1)\n")
            let run = try TestProcess.master(["run", "--local", "2", project.path + "/prog.py"])
            #expect(run.status == 126 || run.status == 127, "\(run.stderr)")
            let expected =
                "distr: ranks [0-1] could not start: '\(project.path)/prog.py' is not executable on this node; chmod +x it there, "
                + "or name its interpreter: distr-master run python3 \(project.path)/prog.py"
            #expect(run.stderr.contains(expected), "\(run.stderr)")
        }
    }

    @Test func filesNamedInTheArguments_areShippedAtTheirPath_andTheMasterSaysSoOnce() throws {
        try withTemporaryDirectory { project in
            try project.write("prog.py", Self.showArguments)
            try project.write("data.csv", "1,2\n")
            try project.write("in/more.txt", "more\n")
            let run = try TestProcess.master(
                ["run", "--local", "2", "python3", "prog.py", "data.csv", "./in/more.txt", "--out=data.csv", "absent.csv"],
                directory: project.path)
            #expect(run.status == 0, "\(run.stderr)")
            let expected = "['prog.py', 'data.csv', './in/more.txt', '--out=data.csv', 'absent.csv'] ['data.csv', './in/more.txt']"
            #expect(run.stdoutLines.sorted() == ["[0] 0 \(expected)", "[1] 1 \(expected)"])
            let notes = run.stderr.split(separator: "\n").filter { $0.contains(Self.note) }
            #expect(notes == ["distr: shipping prog.py, data.csv, ./in/more.txt \(Self.note)"], "\(run.stderr)")
        }
    }

    @Test func filesNamedInTheArgumentsOfALocalPyProgram_areShippedToo() throws {
        try withTemporaryDirectory { project in
            try project.write("prog.py", Self.showArguments)
            try project.write("data.csv", "1,2\n")
            let run = try TestProcess.master(["run", "--local", "1", "prog.py", "data.csv"], directory: project.path)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout == "[0] 0 ['prog.py', 'data.csv'] ['data.csv']\n")
            #expect(run.stderr.contains("distr: shipping data.csv \(Self.note)\n"), "\(run.stderr)")
        }
    }

    @Test func quiet_leavesOutTheShippingNote() throws {
        try withTemporaryDirectory { project in
            try project.write("prog.py", Self.showArguments)
            try project.write("data.csv", "1,2\n")
            let run = try TestProcess.master(["run", "--local", "1", "-q", "python3", "prog.py", "data.csv"], directory: project.path)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout == "[0] 0 ['prog.py', 'data.csv'] ['data.csv']\n")
            #expect(run.stderr == "")
        }
    }

    @Test func noShipArgs_shipsOnlyTheProgramAndSaysNothing() throws {
        try withTemporaryDirectory { project in
            try project.write("prog.py", Self.showArguments)
            try project.write("data.csv", "1,2\n")
            let run = try TestProcess.master(["run", "--local", "1", "--no-ship-args", "prog.py", "data.csv"], directory: project.path)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout == "[0] 0 ['prog.py', 'data.csv'] []\n")
            #expect(!run.stderr.contains("shipping"), "\(run.stderr)")
        }
    }

    @Test func argumentFilesBeyondTheWorkersFileLimit_areRefusedNamingTheLimit() throws {
        try withTestCluster(workers: 1, workerArguments: ["--max-files", "2"]) { cluster in
            try withTemporaryDirectory { project in
                try project.write("prog.py", Self.showArguments)
                try project.write("a.csv", "a\n")
                try project.write("b.csv", "b\n")
                let run = try cluster.master(["run", "python3", "prog.py", "a.csv", "b.csv"], directory: project.path)
                #expect(run.status == 69, "\(run.stderr)")
                #expect(run.stderr.contains("distr: shipping prog.py, a.csv, b.csv \(Self.note)"), "\(run.stderr)")
                #expect(run.stderr.contains("bundle refused: 3 files exceeds the worker's limit of 2 (raise it with distr-worker --max-files)"))
                #expect(run.stdout == "")
            }
        }
    }

    /// Prints where `distr` and `mpi4py` come from, and the PYTHONPATH.
    static let showImports = """
        import os, distr
        try:
            import mpi4py
            shim = mpi4py.__file__
        except ImportError:
            shim = "absent"
        print("distr", distr.__file__)
        print("mpi4py", shim)
        print("path", os.environ["PYTHONPATH"])
        """

    /// The lines of `run`'s output that start with `name` (label and name dropped).
    func values(_ name: String, in run: MasterRun) -> [String] {
        run.stdoutLines.compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 2)
            return fields.count == 3 && fields[1] == name ? String(fields[2]) : nil
        }
    }

    @Test func pythonRank_importsDistrAndTheMPI4PYShimFromTheWorkersDirectory() throws {
        try withTestCluster(workers: 2) { cluster in
            try withTemporaryDirectory { project in
                try project.write("prog.py", Self.showImports)
                let run = try cluster.master(["run", "--env", "PYTHONPATH=/mine", "prog.py"], directory: project.path)
                #expect(run.status == 0, "\(run.stderr)")
                for (rank, worker) in cluster.workers.enumerated() {
                    let modules = PythonModules(directory: worker.workDirectory + "/.distr-python/" + PythonModules.digest(of: pythonSources))
                    // Python shows module paths normalized; the temporary directory's path has a "//".
                    let lines = run.stdoutLines.filter { $0.hasPrefix("[\(rank)] ") }.map { $0.replacingOccurrences(of: "//", with: "/") }
                    #expect(
                        lines
                            == [
                                "[\(rank)] distr \(modules.library)/distr/__init__.py",
                                "[\(rank)] mpi4py \(modules.mpi4pyShim)/mpi4py/__init__.py",
                                "[\(rank)] path \(modules.library):\(modules.mpi4pyShim):/mine",
                            ].map { $0.replacingOccurrences(of: "//", with: "/") })
                    #expect(modules.directory.hasPrefix(worker.workDirectory + "/.distr-python/"))
                }
                // The modules outlive the job; nothing else does.
                #expect(cluster.leftoverJobDirectories.isEmpty)
            }
        }
    }

    @Test(arguments: [false, true])
    func distrMPI4PY0_leavesTheShimOut_fromTheMastersEnvironmentOrFromEnv(viaEnvOption: Bool) throws {
        try withTemporaryDirectory { project in
            try project.write("prog.py", Self.showImports)
            // Its own cache: the user's may be missing or read-only (then the modules would be in
            // the run's temporary directory).
            let cache = ["XDG_CACHE_HOME": project.path + "/cache"]
            let run = try TestProcess.master(
                ["run", "--local", "1"] + (viaEnvOption ? ["--env", "DISTR_MPI4PY=0"] : []) + ["prog.py"], directory: project.path,
                environment: viaEnvOption ? cache : cache.merging(["DISTR_MPI4PY": "0"]) { $1 })
            #expect(run.status == 0, "\(run.stderr)")
            let distr = try #require(values("distr", in: run).first)
            #expect(distr.contains("/distr/python/") && distr.hasSuffix("/lib/distr/__init__.py"), "\(run.stdout)")
            let mpi4py = try #require(values("mpi4py", in: run).first)
            #expect(!mpi4py.contains("/distr/python/"), "the shim was imported: \(run.stdout)")
            #expect(values("path", in: run).first?.contains("mpi4py-shim") == false)
        }
    }

    @Test func localMode_keepsTheCompiledModulesInTheUsersCache_andRanksLoadTheirBytecode() throws {
        try withTemporaryDirectory { root in
            // PYTHONDONTWRITEBYTECODE: ranks cannot make the bytecode themselves.
            let environment = ["XDG_CACHE_HOME": root.path + "/cache", "PYTHONDONTWRITEBYTECODE": "1"]
            let digest = PythonModules.digest(of: pythonSources)
            let library = (root.path + "/cache/distr/python/" + digest + "/lib/distr/__pycache__/").replacingOccurrences(of: "//", with: "/")
            for round in 0..<2 {
                let run = try TestProcess.master(
                    ["run", "--local", "2", "--", "python3", "-v", "-c", "import distr"], directory: root.path, environment: environment)
                #expect(run.status == 0, "\(run.stderr)")
                // -v names where each module's code came from.
                let loaded = (run.stdoutLines + run.stderr.split(separator: "\n").map(String.init)).map {
                    $0.replacingOccurrences(of: "//", with: "/")
                }
                for rank in 0..<2 {
                    let line = loaded.first { $0.hasPrefix("[\(rank)] # code object from ") && $0.contains("/distr/__pycache__/__init__.") }
                    #expect(line?.contains("'" + library + "__init__.") == true, "round \(round), rank \(rank): \(line ?? "none")")
                }
            }
            // Both runs, and both workers of each, used one copy.
            #expect(root.entries("cache/distr/python") == [digest])
        }
    }

    @Test func worker_compilesItsModules_withoutDelayingItsStart_andKeepsTheBytecode() throws {
        try withTemporaryDirectory { root in
            try ClusterSecret.generate(path: root.path + "/secret")
            let work = root.path + "/work"
            let modules = PythonModules(directory: work + "/.distr-python/" + PythonModules.digest(of: pythonSources))
            let first = try TestWorker(secretFile: root.path + "/secret", workDirectory: work)
            // At nice 19 the compile waits for the CPU as long as other work keeps both cores
            // busy (a loaded CI machine: over 30 s); the worker's own limit is CPU time, so wait
            // as long as it would.
            #expect(
                first.process.stderr.waitFor("compiled the Python modules in \(modules.directory)", timeout: PythonModules.backgroundWallLimit),
                "\(first.process.stderr.text)")
            #expect(!modules.lacksBytecode)
            first.stop()
            // A restart finds the copy with its bytecode whole: nothing installed or compiled again.
            let second = try TestWorker(secretFile: root.path + "/secret", workDirectory: work)
            try root.write("prog.py", "import distr\n")
            let run = try TestProcess.master(
                ["run", "--hosts", second.peer, "--secret-file", root.path + "/secret", "prog.py"], directory: root.path)
            #expect(run.status == 0, "\(run.stderr)")
            second.stop()
            #expect(
                !second.process.stderr.text.contains("compiled") && !second.process.stderr.text.contains("installed them again"),
                "\(second.process.stderr.text)")
        }
    }

    /// The compile is a child of the worker, like the processes a job leaves behind, and a
    /// `python3` that is a shell script (pyenv's) orphans processes of its own to the worker;
    /// a job that ends meanwhile must end neither.
    @Test func worker_aJobEndingWhileTheModulesCompile_leavesTheCompileAndWhatItStartedAlone() throws {
        try withTemporaryDirectory { root in
            try ClusterSecret.generate(path: root.path + "/secret")
            let bin = root.path + "/bin"
            try FileIO.makeDirectories(bin)
            let go = root.path + "/go"
            // Holds the compile and an orphan of its own until the job has ended; the compile
            // fails (exit 3) if the orphan does not answer within 10 s.
            try FileIO.write(
                bin + "/python3",
                Array(
                    """
                    #!/bin/sh
                    ( ( while [ ! -f \(go) ]; do sleep 0.02; done; touch \(go).orphan ) & )
                    while [ ! -f \(go) ]; do sleep 0.02; done
                    n=0; while [ ! -f \(go).orphan ]; do n=$((n+1)); [ $n -gt 500 ] && exit 3; sleep 0.02; done
                    PATH=${PATH#\(bin):} exec python3 "$@"

                    """.utf8), mode: 0o755, exclusive: true)
            let worker = try TestWorker(
                secretFile: root.path + "/secret", workDirectory: root.path + "/work",
                environment: ["PATH": bin + ":" + (Environment.value("PATH") ?? "/usr/bin:/bin")])
            defer { worker.stop() }
            let run = try TestProcess.master(["exec", "--hosts", worker.peer, "--secret-file", root.path + "/secret", "--", "true"])
            #expect(run.status == 0, "\(run.stderr)")
            try FileIO.write(go, [], mode: 0o644, exclusive: true)
            let ended = worker.process.stderr.waitUntil(timeout: PythonModules.backgroundWallLimit) {
                $0.contains("compiled the Python modules") || $0.contains("compile the modules on import")
            }
            #expect(ended && worker.process.stderr.text.contains("compiled the Python modules"), "\(worker.process.stderr.text)")
        }
    }

    @Test func explicitEnvOption_winsOverTheMastersEnvironment() throws {
        try withTemporaryDirectory { project in
            try project.write("prog.py", Self.showImports)
            let run = try TestProcess.master(
                ["run", "--local", "1", "--env", "DISTR_MPI4PY=1", "prog.py"], directory: project.path, environment: ["DISTR_MPI4PY": "0"])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(values("mpi4py", in: run).first?.hasSuffix("/mpi4py-shim/mpi4py/__init__.py") == true, "\(run.stdout)")
        }
    }

    @Test func twoWorkersSharingAWorkDirectory_shareOneCopyOfTheModules() throws {
        try withTemporaryDirectory { root in
            try ClusterSecret.generate(path: root.path + "/secret")
            let work = root.path + "/work"
            let first = try TestWorker(secretFile: root.path + "/secret", workDirectory: work)
            defer { first.stop() }
            let second = try TestWorker(secretFile: root.path + "/secret", workDirectory: work)
            defer { second.stop() }
            try root.write("prog.py", Self.showImports)
            let run = try TestProcess.master(
                ["run", "--hosts", "\(first.peer),\(second.peer)", "--secret-file", root.path + "/secret", "prog.py"], directory: root.path)
            #expect(run.status == 0, "\(run.stderr)")
            let paths = values("distr", in: run)
            #expect(paths.count == 2 && Set(paths).count == 1, "\(run.stdout)")
            #expect(root.entries("work/.distr-python").count == 1)
            // One worker stopping leaves the other's modules in place.
            first.stop()
            let again = try TestProcess.master(
                ["run", "--hosts", second.peer, "--secret-file", root.path + "/secret", "prog.py"], directory: root.path)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(values("distr", in: again) == [paths[0]])
        }
    }

    @Test func uncaughtException_endsTheJob_andTheSummaryShowsTheWholeTraceback() throws {
        try withTemporaryDirectory { project in
            try project.write(
                "prog.py",
                """
                import os, sys, time
                def inner(rank):
                    raise ValueError("rank %d gave up" % rank)
                def outer(rank):
                    inner(rank)
                rank = int(os.environ["DISTR_NODE_ID"])
                if rank == 1:
                    print("about to fail", file=sys.stderr)
                    outer(rank)
                time.sleep(300)
                """)
            let run = try TestProcess.master(["run", "--local", "3", "prog.py"], directory: project.path)
            #expect(run.status == 1, "\(run.stderr)")
            let summary = try #require(run.stderr.range(of: "distr: 3 rank(s) on 3 node(s)")).lowerBound
            let lines = run.stderr[summary...].split(separator: "\n").map(String.init)
            let start = try #require(lines.firstIndex { $0.hasPrefix("distr: rank 1 on ") }, "\(run.stderr)")
            #expect(lines[start].hasSuffix(": exit 1"), "\(lines)")
            // The file's path is in the job directory on the node: only its name is compared.
            let tail = lines[(start + 1)...].prefix { $0.hasPrefix("distr:   [1] ") }.map { line in
                let text = line.dropFirst("distr:   [1] ".count).trimmingCharacters(in: .whitespaces)
                guard text.hasPrefix("File \""), let end = text.range(of: "/prog.py\"") else { return text }
                return "File \"prog.py\"" + text[end.upperBound...]
            }
            #expect(
                tail.filter { !$0.hasPrefix("^") } == [
                    "about to fail", "Traceback (most recent call last):", "File \"prog.py\", line 9, in <module>",
                    "outer(rank)", "File \"prog.py\", line 5, in outer", "inner(rank)",
                    "File \"prog.py\", line 3, in inner", "raise ValueError(\"rank %d gave up\" % rank)",
                    "ValueError: rank 1 gave up",
                ], "\(run.stderr)")
            #expect(run.stderr.contains("distr: ranks [0,2] were ended by distr: rank 1 failed (exit 1)"), "\(run.stderr)")
        }
    }

    @Test func ctrlC_endsEveryPythonRank_sleepingOrReading_andExits130() throws {
        try withTestCluster(workers: 2, slots: [2, 1]) { cluster in
            try withTemporaryDirectory { project in
                try project.write(
                    "prog.py",
                    """
                    import os, signal, time
                    rank = int(os.environ["DISTR_NODE_ID"])
                    print("pids", os.getpid(), flush=True)
                    if rank == 0:
                        time.sleep(300)
                    elif rank == 1:
                        r, w = os.pipe()
                        os.read(r, 1)
                    else:
                        signal.signal(signal.SIGTERM, signal.SIG_IGN)
                        time.sleep(300)
                    """)
                let master = try cluster.startMaster(["run", "prog.py"], directory: project.path)
                #expect(master.stdout.waitFor(count: 3, of: "] pids "), "\(master.stdout.text)\(master.stderr.text)")
                let pids = master.stdout.text.split(separator: "\n").compactMap { line in line.split(separator: " ").last.flatMap { pid_t($0) } }
                #expect(pids.count == 3)
                master.signal(SIGINT)
                let status = master.wait(timeout: 30)
                #expect(status.code == 130, "\(master.stderr.text)")
                #expect(master.stderr.text.contains("interrupted: the job was ended on"), "\(master.stderr.text)")
                for pid in pids { #expect(Processes.waitGone(pid), "pid \(pid) survived") }
                #expect(cluster.leftoverJobDirectories.isEmpty)
            }
        }
    }
}
