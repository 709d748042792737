/// `distr-worker`: parse the command line, start the daemon, serve until SIGTERM/SIGINT.
package enum WorkerCommand {
    package static let usage =
        "usage: distr-worker [--port N] [--bind ADDR] [--secret-file PATH] [--work-dir DIR] [--python-dir DIR] [--max-bundle-bytes N] [--max-files N] [--grace SECONDS] [--handshake-timeout S] [--frame-timeout S] [--master-timeout S] [--cache-bytes N] [--max-jobs N] [--no-cgroups]"

    package static let help = """
        distr-worker: runs distr jobs on this node. Listens on one TCP port (default 6969) for
        authenticated connections from distr-master and from ranks of running jobs.

        \(usage)

          --port N               port to listen on (default 6969; 0 picks a free port)
          --bind ADDR            address to listen on (default 0.0.0.0; '::' for IPv6)
          --secret-file PATH     cluster secret (default $DISTR_SECRET_FILE, else ~/.config/distr/secret)
          --work-dir DIR         where job directories are made (default $TMPDIR or /tmp)
          --python-dir DIR       where the Python modules for Python ranks are installed, and their
                                 bytecode kept (default WORKDIR/.distr-python)
          --max-bundle-bytes N   largest bundle accepted (default 8 GiB)
          --max-files N          most files in a bundle (default 100000)
          --grace SECONDS        time between SIGTERM and SIGKILL when a job is ended (default 2)
          --handshake-timeout S  time a connecting peer has to finish the whole handshake (default 5)
          --frame-timeout S      time an authenticated peer has to finish a message it has begun,
                                 and a master to send its job once connected (default 30)
          --master-timeout S     the job's lease: a master silent this long (no heartbeat; gone,
                                 frozen or cut off) has its job ended and its directory removed
                                 (default 5, at least 2)
          --cache-bytes N        keep shipped files by digest in WORKDIR/.distr-cache, up to N bytes,
                                 so they are not shipped again (default 1 GiB; 0 turns it off)
          --max-jobs N           run at most N jobs at once; a job over the bound waits for a slot
                                 (its master says so, and for whom) rather than being refused
                                 (default: no bound)
          --no-cgroups           do not make a cgroup per job (by default one is made where the worker
                                 may, so that nothing a job starts can outlive it)
          -h, --help             show this help
          --version              show the version

        When ready it prints one line on stdout, 'distr-worker listening on HOST:PORT', then logs on
        stderr. SIGTERM or SIGINT: stop accepting, end running jobs, remove their directories, exit 0.
        """

    package static func main(_ arguments: [String]) -> Int32 {
        // Before any thread exists, so that every thread inherits the mask and a SIGTERM that
        // arrives during start-up waits for the signal thread instead of being lost.
        Signals.block([.terminate, .interrupt])
        Signals.ignorePipe()
        var bind = "0.0.0.0"
        var port = Peer.defaultPort
        var secretFile: String?
        var workDirectory = Environment.value("TMPDIR").flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var pythonDirectory: String?
        var limits = Limits()
        var grace = 2.0
        var masterTimeout = Liveness.defaultTimeout
        var exitWithParent = false
        var useControlGroups = true
        var cacheBytes = 1 << 30
        var maxJobs: Int?
        var scanner = ArgumentScanner(arguments)
        do {
            while let token = scanner.next() {
                switch token {
                case .option("-h", _), .option("--help", _):
                    print(help)
                    return 0
                case .option("--version", _):
                    print("distr-worker \(DistrVersion.string) (protocol \(Handshake.version))")
                    return 0
                case .option("--port", let inline): port = try scanner.number(of: "--port", inline: inline, minimum: 0)
                case .option("--bind", let inline): bind = try scanner.value(of: "--bind", inline: inline)
                case .option("--secret-file", let inline): secretFile = try scanner.value(of: "--secret-file", inline: inline)
                case .option("--work-dir", let inline): workDirectory = try scanner.value(of: "--work-dir", inline: inline)
                case .option("--python-dir", let inline): pythonDirectory = try scanner.value(of: "--python-dir", inline: inline)
                case .option("--max-bundle-bytes", let inline):
                    limits.maxBundleBytes = try scanner.number(of: "--max-bundle-bytes", inline: inline, minimum: 0)
                case .option("--max-files", let inline): limits.maxFiles = try scanner.number(of: "--max-files", inline: inline, minimum: 0)
                case .option("--grace", let inline): grace = try scanner.number(of: "--grace", inline: inline, minimum: 0.0)
                case .option("--cache-bytes", let inline): cacheBytes = try scanner.number(of: "--cache-bytes", inline: inline, minimum: 0)
                case .option("--handshake-timeout", let inline):
                    limits.handshakeTimeout = try scanner.number(of: "--handshake-timeout", inline: inline, minimum: 0.01)
                case .option("--frame-timeout", let inline):
                    limits.frameTimeout = try scanner.number(of: "--frame-timeout", inline: inline, minimum: 0.01)
                case .option("--master-timeout", let inline):
                    masterTimeout = try scanner.number(of: "--master-timeout", inline: inline, minimum: Liveness.minimumTimeout)
                case .option("--exit-with-parent", let inline):
                    try scanner.flag("--exit-with-parent", inline: inline)
                    exitWithParent = true
                case .option("--max-jobs", let inline): maxJobs = try scanner.number(of: "--max-jobs", inline: inline, minimum: 1)
                case .option("--no-cgroups", let inline):
                    try scanner.flag("--no-cgroups", inline: inline)
                    useControlGroups = false
                case .option(let name, _): throw UsageError("unknown option '\(name)'")
                case .positional(let value): throw UsageError("unexpected argument '\(value)'")
                }
            }
            if port > 65535 { throw UsageError("--port must be from 0 to 65535") }
        } catch {
            CurrentProcess.printError("distr-worker: \(error)\n\(usage)\n")
            return ExitCode.usage
        }
        if exitWithParent {
            // Used by --local: the workers end with the master that started them.
            let parent = CurrentProcess.parentID
            try? CurrentProcess.setParentDeathSignal(.terminate)  // Fails only for an invalid signal.
            if CurrentProcess.parentID != parent { return 0 }
        }
        let secret: [UInt8]
        let secretPath = ClusterSecret.path(explicit: secretFile)
        do { secret = try ClusterSecret.load(path: secretPath) } catch {
            CurrentProcess.printError("distr-worker: \(error)\n")
            return ExitCode.usage
        }
        guard (try? FileStatus(path: workDirectory))?.kind == .directory else {  // Missing or unreadable: refused.
            CurrentProcess.printError("distr-worker: work directory '\(workDirectory)' does not exist; create it or pass --work-dir\n")
            return ExitCode.usage
        }
        // Ranks run inside their job directories, so every path handed to them (the job
        // directory, PYTHONPATH's module directories) must not depend on the worker's own
        // working directory: a relative --work-dir left Python ranks without distr's modules.
        func absolute(_ path: String, of option: String) -> String? {
            do { return try CurrentProcess.absolutePath(path) } catch {
                CurrentProcess.printError("distr-worker: cannot make \(option) '\(path)' absolute: \(error); pass an absolute path\n")
                return nil
            }
        }
        guard let absoluteWork = absolute(workDirectory, of: "--work-dir") else { return ExitCode.usage }
        workDirectory = absoluteWork
        if let relative = pythonDirectory {
            guard let absolutePython = absolute(relative, of: "--python-dir") else { return ExitCode.usage }
            pythonDirectory = absolutePython
        }
        var configuration = WorkerConfiguration(secret: secret, workDirectory: workDirectory) { message in
            CurrentProcess.printError("distr-worker: \(message)\n")
        }
        // Still one thread here: the sentinel is forked before the worker starts any.
        configuration.sentinel = Sentinel.start(workDirectory: workDirectory) { configuration.log($0) }
        configuration.pythonDirectory = pythonDirectory
        configuration.bind = bind
        configuration.port = port
        configuration.limits = limits
        configuration.grace = grace
        configuration.masterTimeout = masterTimeout
        configuration.cacheBytes = cacheBytes
        configuration.useControlGroups = useControlGroups
        configuration.maxJobs = maxJobs
        // Test-only: advertise another protocol version, to test version mismatch without an old build.
        if let text = Environment.value("DISTR_TEST_PROTOCOL_VERSION") {
            guard let version = UInt16(text) else {
                CurrentProcess.printError("distr-worker: DISTR_TEST_PROTOCOL_VERSION must be a number from 0 to 65535, not '\(text)'\n")
                return ExitCode.usage
            }
            configuration.protocolVersion = version
        }
        let worker: Worker
        do { worker = try Worker(configuration) } catch {
            CurrentProcess.printError("distr-worker: \(error)\n")
            return ExitCode.unavailable
        }
        let stop = Latch()
        Signals.handle([.terminate, .interrupt]) { _ in stop.open() }
        worker.start()
        print("distr-worker listening on \(worker.listeningDescription)")
        CurrentProcess.printError("distr-worker: secret \(secretPath), jobs in \(workDirectory)\n")
        stop.wait()
        CurrentProcess.printError("distr-worker: shutting down\n")
        worker.shutdown()
        return 0
    }
}
