import Synchronization

/// `distr-master`: parse the command line, run the job, map the outcome to an exit status.
package enum MasterCommand {
    /// What Ctrl-C does now (nil: exit at once).
    private static let onInterrupt = Mutex<(@Sendable (Signal) -> Void)?>(nil)

    package static let usage = """
        usage: distr-master run [OPTIONS] [--] PROGRAM [ARGS...]
               distr-master exec [OPTIONS] [--] COMMAND...
               distr-master shell [OPTIONS]
               distr-master status [--peers FILE | --hosts LIST | --local N] [--secret-file PATH] [--connect-timeout S] [--json]
               distr-master keygen [--secret-file PATH] [--force]
        """

    package static let help = """
        distr-master: runs a program on every node of a distr cluster and prints their output.

        \(usage)

        Subcommands:
          run PROGRAM [ARGS...]  run one parallel program; PROGRAM is shipped when it names a local
                                 file and is not an absolute path; a local PROGRAM.py runs as
                                 'python3 PROGRAM.py' unless it is executable and starts with #!;
                                 ARGS that are relative paths of local files are shipped too;
                                 slots=N peers run N ranks
          exec COMMAND...        run a shell command (/bin/sh -c) once on every node, nothing shipped;
                                 plain words without shell syntax are started directly
          shell                  read command lines (a prompt on a terminal) and run each on every
                                 node, or on some: '@0,2-3 CMD', '@HOST CMD'; output gathered
          status                 the preflight: ask every peer at once (within --connect-timeout)
                                 whether it is reachable and authenticated, and its version, host,
                                 OS/arch, cores, load, free memory and disk, clock offset, running
                                 jobs and the address it sees the master at; one table, or --json
                                 (one object with a 'peers' array); exit 0 only when every peer
                                 is usable, else 69
          keygen                 write a new cluster secret (default ~/.config/distr/secret, mode 0600)

        Where the workers are (one of):
          --peers FILE           peers file, one 'HOST[:PORT] [slots=N]' per line (default ./peers.txt)
          --hosts LIST           comma-separated peers instead of a file: h1,h2:7000,[::1]:6970;
                                 host lists as pdsh and Slurm write them: rpi-[0-3],
                                 node[01-04,07]:7000, "$SLURM_JOB_NODELIST" (at most 4096)
          --local N              start N workers on loopback for this job, then stop them

        Options:
          --secret-file PATH     cluster secret (default $DISTR_SECRET_FILE, else ~/.config/distr/secret)
          --connect-timeout S    seconds to reach and authenticate each worker (default 5),
                                 counted once host names are looked up
          --node-timeout S       a node silent this long (no heartbeat: gone, frozen or cut off)
                                 is reported and the job ended (run) or that node's result
                                 given up (exec); default 5, at least 2
          --file PATH            ship a file or directory (repeatable); directories keep their layout
          --no-ship-args         run: do not ship the local files named in ARGS
          --env NAME=VALUE       set a variable for every rank (repeatable); --env NAME passes
                                 this shell's value on (mpirun -x NAME); DISTR_MPI4PY=0 turns
                                 off distr's mpi4py for Python ranks (also taken from the
                                 master's own environment)
          --timeout S            end the job after S seconds (exit 124)
          --keep-going           run: do not end the other ranks when one fails
          --group                print each node's output as a block, in node order, after the job
          --gather               print identical output once, with its ranks folded ([0-3,5])
          --timestamps           prefix each output line with the local time the worker read it,
                                 2026-11-22T21:48:43.123 (milliseconds, no zone)
          --output-dir DIR       also write each rank's stdout and stderr, unchanged, to DIR/<id>.out
                                 and DIR/<id>.err (DIR is created)
          --spill-after BYTES    --group/--gather: output a rank keeps in memory before the rest goes
                                 to a temporary file (default 8388608; 64 MiB in all)
          --stdin [all]          forward this stdin to rank 0 (with 'all': to every rank); the
                                 other ranks read /dev/null
          --skip-unreachable     run on the nodes that can be reached, numbered 0..k-1, and say
                                 which were skipped and why (default: an unreachable node fails
                                 the run with exit 69)
          --keep                 keep the job directories on the workers and print where they are
          -q, --quiet            no summary line when every rank succeeded, no note of shipped ARGS
          -h, --help             show this help
          --version              show the version

        Exit status: 0 when every rank exited 0; else the highest rank status (128+N for signal N).
        64 usage or configuration error, 69 a node unreachable or refusing the job (status: a
        peer not usable),
        124 --timeout reached, 130 interrupted.
        """

    enum Command {
        case run(MasterOptions)
        case shell(MasterOptions)
        case status(MasterOptions, json: Bool)
        case keygen(path: String?, force: Bool)
        case help
        case version
    }

    /// `environment` looks up this process's variables (`--env NAME` passes one's value on).
    static func parse(_ arguments: [String], environment: (String) -> String? = Environment.value) throws(UsageError) -> Command {
        guard let subcommand = arguments.first else { throw UsageError("missing subcommand") }
        var scanner = ArgumentScanner(Array(arguments.dropFirst()))
        switch subcommand {
        case "-h", "--help", "help": return .help
        case "--version", "version": return .version
        case "keygen":
            var path: String?
            var force = false
            while let token = scanner.next() {
                switch token {
                case .option("--secret-file", let inline): path = try scanner.value(of: "--secret-file", inline: inline)
                case .option("--force", let inline):
                    try scanner.flag("--force", inline: inline)
                    force = true
                case .option("-h", _), .option("--help", _): return .help
                case .option(let name, _): throw UsageError("unknown option '\(name)' for keygen")
                case .positional(let value): throw UsageError("unexpected argument '\(value)' for keygen")
                }
            }
            return .keygen(path: path, force: force)
        case "status":
            var options = MasterOptions(mode: .exec(command: []))
            var json = false
            var peerSources = 0
            while let token = scanner.next() {
                if try parseWhere(token, &scanner, &options, sources: &peerSources) { continue }
                switch token {
                case .option("-h", _), .option("--help", _): return .help
                case .option("--json", let inline):
                    try scanner.flag("--json", inline: inline)
                    json = true
                case .option(let name, _): throw UsageError("unknown option '\(name)' for status")
                case .positional(let value): throw UsageError("unexpected argument '\(value)' for status")
                }
            }
            if peerSources > 1 { throw UsageError("use only one of --peers, --hosts and --local") }
            return .status(options, json: json)
        case "run", "exec", "shell":
            var options = MasterOptions(mode: .exec(command: []))
            var positional: [String] = []
            var peerSources = 0
            parsing: while let token = scanner.next() {
                switch token {
                case .positional(let value):
                    if subcommand == "shell" { throw UsageError("shell takes no command ('\(value)'): type commands at its prompt or pipe them in") }
                    positional = [value] + scanner.rest()
                    break parsing
                case .option("-h", _), .option("--help", _): return .help
                case _ where try parseWhere(token, &scanner, &options, sources: &peerSources): continue
                case .option("--node-timeout", let inline):
                    options.nodeTimeout = try scanner.number(of: "--node-timeout", inline: inline, minimum: Liveness.minimumTimeout)
                case .option("--file", let inline): options.files.append(try scanner.value(of: "--file", inline: inline))
                case .option("--env", let inline):
                    options.environment.append(try Self.environmentSetting(scanner.value(of: "--env", inline: inline), environment))
                case .option("--timeout", let inline): options.timeout = try scanner.number(of: "--timeout", inline: inline, minimum: 0.001)
                case .option("--keep-going", let inline):
                    try scanner.flag("--keep-going", inline: inline)
                    options.keepGoing = true
                case .option("--group", let inline):
                    try scanner.flag("--group", inline: inline)
                    options.output = .group
                case .option("--gather", let inline):
                    try scanner.flag("--gather", inline: inline)
                    options.output = .gather
                case .option("--timestamps", let inline):
                    try scanner.flag("--timestamps", inline: inline)
                    options.timestamps = true
                case .option("--spill-after", let inline):
                    options.spillAfter = try scanner.number(of: "--spill-after", inline: inline, minimum: 1)
                case .option("--output-dir", let inline):
                    let directory = try scanner.value(of: "--output-dir", inline: inline)
                    guard !directory.isEmpty else { throw UsageError("--output-dir needs a directory, not an empty string") }
                    options.outputDirectory = directory
                case .option("--keep", let inline):
                    try scanner.flag("--keep", inline: inline)
                    options.keepDirectory = true
                case .option("--stdin", let inline):
                    switch inline {
                    case nil: options.stdin = scanner.take("all") ? .allRanks : .firstRank
                    case "all": options.stdin = .allRanks
                    case "0": options.stdin = .firstRank
                    case let other?: throw UsageError("--stdin takes 'all' or nothing (rank 0), not '\(other)'")
                    }
                case .option("--skip-unreachable", let inline):
                    try scanner.flag("--skip-unreachable", inline: inline)
                    options.skipUnreachable = true
                case .option("--no-ship-args", let inline):
                    try scanner.flag("--no-ship-args", inline: inline)
                    options.shipArguments = false
                case .option("-q", let inline), .option("--quiet", let inline):
                    try scanner.flag("--quiet", inline: inline)
                    options.quiet = true
                case .option(let name, _): throw UsageError("unknown option '\(name)' for \(subcommand)")
                }
            }
            if peerSources > 1 { throw UsageError("use only one of --peers, --hosts and --local") }
            if subcommand == "shell" { return .shell(options) }
            guard let first = positional.first else {
                throw UsageError(subcommand == "run" ? "run needs a PROGRAM" : "exec needs a COMMAND")
            }
            options.mode = subcommand == "run" ? .run(program: first, arguments: Array(positional.dropFirst())) : .exec(command: positional)
            return .run(options)
        default:
            throw UsageError("unknown subcommand '\(subcommand)'")
        }
    }

    /// `--env NAME=VALUE` as given; `--env NAME` with this process's value of NAME, as
    /// `mpirun -x NAME` passes it on.
    static func environmentSetting(_ value: String, _ environment: (String) -> String?) throws(UsageError) -> String {
        if let eq = value.firstIndex(of: "=") {
            guard eq != value.startIndex else { throw UsageError("--env needs NAME=VALUE or NAME, not '\(value)'") }
            return value
        }
        guard !value.isEmpty else { throw UsageError("--env needs NAME=VALUE or NAME, not an empty word") }
        guard let current = environment(value) else {
            throw UsageError("--env \(value): \(value) is not set here; give its value with --env \(value)=VALUE")
        }
        return value + "=" + current
    }

    /// Parses an option about where the workers are and how to reach them (shared by run, exec
    /// and status); false when `token` is not one.
    static func parseWhere(
        _ token: ArgumentScanner.Token, _ scanner: inout ArgumentScanner, _ options: inout MasterOptions, sources: inout Int
    ) throws(UsageError) -> Bool {
        switch token {
        case .option("--peers", let inline): options.peers = .file(try scanner.value(of: "--peers", inline: inline))
        case .option("--hosts", let inline): options.peers = .hosts(try scanner.value(of: "--hosts", inline: inline))
        case .option("--local", let inline):
            let count: Int = try scanner.number(of: "--local", inline: inline, minimum: 1)
            guard count <= 256 else { throw UsageError("--local takes at most 256 workers") }
            options.peers = .local(count)
        case .option("--secret-file", let inline):
            options.secretFile = try scanner.value(of: "--secret-file", inline: inline)
            return true
        case .option("--connect-timeout", let inline):
            options.connectTimeout = try scanner.number(of: "--connect-timeout", inline: inline, minimum: 0.001)
            return true
        default: return false
        }
        sources += 1
        return true
    }

    package static func main(_ arguments: [String]) -> Int32 {
        // Before any thread exists: Ctrl-C during start-up waits for the signal thread.
        Signals.block([.interrupt, .terminate])
        CurrentProcess.useOneMallocArena()
        Signals.ignorePipe()
        Signals.handle([.interrupt, .terminate]) { signal in
            // Until a job runs there is nothing to end: leave at once (--local workers end with us).
            guard let interrupt = onInterrupt.withLock({ $0 }) else { CurrentProcess.exit(ExitCode.interrupted) }
            interrupt(signal)
        }
        let command: Command
        do { command = try parse(arguments) } catch {
            CurrentProcess.printError("distr-master: \(error)\n\(usage)\nRun 'distr-master --help' for the options.\n")
            return ExitCode.usage
        }
        switch command {
        case .help:
            print(help)
            return 0
        case .version:
            print("distr-master \(DistrVersion.string) (protocol \(Handshake.version))")
            return 0
        case .keygen(let explicit, let force):
            let path = ClusterSecret.path(explicit: explicit)
            do { try ClusterSecret.generate(path: path, force: force) } catch {
                CurrentProcess.printError("distr-master: \(error)\n")
                return ExitCode.usage
            }
            print("wrote a new cluster secret to \(path) (mode 0600)")
            print("copy it to the same place on every node, e.g.: scp -p \(path) NODE:.config/distr/secret")
            return 0
        case .run(let options):
            return run(options)
        case .shell(let options):
            return run(options, shell: true)
        case .status(let options, let json):
            return status(options, json: json)
        }
    }

    /// `distr-master status`: one table (or JSON) on stdout; 0 when every peer is usable, else 69.
    static func status(_ options: MasterOptions, json: Bool) -> Int32 {
        let peers: [Peer]
        let secret: [UInt8]
        var cluster: LocalCluster?
        do { (peers, secret, cluster) = try resolvePeers(options) } catch { return error.code }
        defer { cluster?.stop() }
        let results = StatusProbe.probe(peers, secret: secret, timeout: options.connectTimeout)
        print(json ? StatusTable.json(results) : StatusTable.table(results), terminator: "")
        return results.allSatisfy(\.isUsable) ? ExitCode.ok : ExitCode.unavailable
    }

    /// The exit status of a failure already reported on stderr.
    struct Reported: Error {
        var code: Int32
    }

    /// The peers and secret `options` name; a local cluster is started for `--local`.
    /// - Throws: `Reported` after printing why: 69 when local workers cannot start, 64 for a
    ///   bad peers file or secret file.
    static func resolvePeers(_ options: MasterOptions) throws(Reported) -> ([Peer], [UInt8], LocalCluster?) {
        do { return try loadPeers(options) } catch let error as LocalClusterError {
            CurrentProcess.printError("distr-master: \(error)\n")
            throw Reported(code: ExitCode.unavailable)
        } catch {
            CurrentProcess.printError("distr-master: \(error)\n")
            throw Reported(code: ExitCode.usage)
        }
    }

    private static func loadPeers(_ options: MasterOptions) throws -> ([Peer], [UInt8], LocalCluster?) {
        switch options.peers {
        case .local(let count):
            let local = try LocalCluster(count: count, grace: options.grace)
            return (local.peers, local.secret, local)
        case .file(let path):
            return (try PeersFile.load(path: path), try ClusterSecret.load(path: ClusterSecret.path(explicit: options.secretFile)), nil)
        case .hosts(let list):
            return (try PeersFile.parseHostList(list), try ClusterSecret.load(path: ClusterSecret.path(explicit: options.secretFile)), nil)
        }
    }

    static func run(_ options: MasterOptions, shell: Bool = false) -> Int32 {
        let peers: [Peer]
        let secret: [UInt8]
        var cluster: LocalCluster?
        do { (peers, secret, cluster) = try resolvePeers(options) } catch { return error.code }
        let local = cluster
        defer { local?.stop() }
        if shell {
            let remote = RemoteShell(options: options, peers: peers, secret: secret)
            onInterrupt.withLock {
                $0 = { signal in
                    if signal == .terminate { local?.stop() }
                    remote.handle(signal)
                }
            }
            defer { onInterrupt.withLock { $0 = nil } }
            return remote.run()
        }
        let launcher = Launcher(options: options, peers: peers, secret: secret)
        onInterrupt.withLock {
            $0 = { _ in
                if launcher.interrupt() {
                    local?.stop()
                    CurrentProcess.exit(ExitCode.interrupted)
                }
            }
        }
        defer { onInterrupt.withLock { $0 = nil } }
        return launcher.run()
    }
}
