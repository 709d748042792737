@preconcurrency import Glibc
import CDistrSys
import Dispatch
import Synchronization

/// What to start and how to wire it.
package struct SpawnRequest: Sendable {
    package var arguments: [String]
    package var environment: [String]
    package var directory: String?
    /// Descriptor for the child's stdin; nil: `/dev/null`.
    package var stdin: Int32?
    package var stdout: Int32
    package var stderr: Int32
    /// Extra descriptors to hand over, as (source in this process, number in the child).
    package var inherited: [(source: Int32, target: Int32)] = []
    /// A signal the child gets when the thread that spawned it ends, or this process dies
    /// (`PR_SET_PDEATHSIG`): ranks die with their worker, even with `kill -9`.
    package var parentDeathSignal: Signal?
    /// An open `cgroup.procs` (see `ControlGroup`): the child joins that cgroup before it runs.
    package var controlGroupProcs: Int32?
    /// The same cgroup's open directory: the child is born in it (clone3 with
    /// `CLONE_INTO_CGROUP`), which spares the rank a migration; `controlGroupProcs` is the
    /// fallback where the kernel cannot do that.
    package var controlGroupDirectory: Int32?

    package init(
        arguments: [String], environment: [String], directory: String? = nil, stdin: Int32? = nil, stdout: Int32,
        stderr: Int32, inherited: [(source: Int32, target: Int32)] = [], parentDeathSignal: Signal? = nil,
        controlGroupProcs: Int32? = nil, controlGroupDirectory: Int32? = nil
    ) {
        self.arguments = arguments
        self.environment = environment
        self.directory = directory
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.inherited = inherited
        self.parentDeathSignal = parentDeathSignal
        self.controlGroupProcs = controlGroupProcs
        self.controlGroupDirectory = controlGroupDirectory
    }
}

/// Starts processes: own process group, default signal dispositions (so SIGPIPE and SIGTERM
/// work in the child even though the parent ignores or blocks them), an empty signal mask,
/// stdin from `/dev/null`, and only the listed descriptors inherited (every other descriptor
/// distr opens is close-on-exec). The child side is `cdistr_spawn` (vfork and execve: between
/// them only async-signal-safe calls may run, which Swift cannot promise); the PATH search and
/// everything else happen here.
///
/// All children of the process are reaped by one dedicated thread (`waitpid(-1)`), which hands
/// each status to the callback registered at spawn time. Orphaned descendants that the kernel
/// reparents to a subreaper are reaped by it too, so they never linger as zombies.
package enum Spawner {
    /// - Returns: the child's pid (also its process group id).
    /// - Throws: `SystemError` (ENOENT when the program does not exist, EACCES when it is not
    ///   executable, or the errno of the step that failed in the child).
    package static func spawn(_ request: SpawnRequest, onExit: @escaping @Sendable (RankStatus) -> Void) throws(SystemError) -> pid_t {
        let program = try resolve(request.arguments.first ?? "")
        var sources: [Int32] = [request.stdout, request.stderr]
        var targets: [Int32] = [1, 2]
        if let stdin = request.stdin {
            sources.append(stdin)
            targets.append(0)
        }
        for (source, target) in request.inherited {
            sources.append(source)
            targets.append(target)
        }
        let argv = request.arguments.map { strdup($0) } + [nil]
        let envp = request.environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        return try ChildReaper.shared.spawnRegistered(onExit: onExit) {
            cdistr_spawn(
                program, argv, envp, request.directory, sources, targets, Int32(sources.count), request.stdin == nil ? 1 : 0,
                request.parentDeathSignal?.rawValue ?? 0, request.controlGroupProcs ?? -1,
                request.controlGroupDirectory ?? -1)
        }
    }

    /// The file `execvp` would run for `program`: itself when it contains a slash, else the
    /// first executable file of that name in this process's PATH.
    static func resolve(_ program: String) throws(SystemError) -> String {
        guard !program.isEmpty else { throw SystemError("execve", errno: ENOENT) }
        if program.utf8.contains(UInt8(ascii: "/")) { return program }
        let path = Environment.value("PATH") ?? "/usr/local/bin:/usr/bin:/bin"
        var sawDenied = false
        for directory in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + program
            var info = stat()
            guard stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            if access(candidate, X_OK) == 0 { return candidate }
            sawDenied = true
        }
        throw SystemError("execve", errno: sawDenied ? EACCES : ENOENT)
    }
}

/// The one thread that reaps every child of this process.
final class ChildReaper: Sendable {
    static let shared = ChildReaper()

    private let waiting = Mutex<[pid_t: @Sendable (RankStatus) -> Void]>([:])
    private let childrenAppeared = DispatchSemaphore(value: 0)

    private init() {
        let threadBody: @Sendable () -> Void = { [self] in run() }
        Threads.start(name: "distr-reaper", threadBody)
    }

    func spawnRegistered(
        onExit: @escaping @Sendable (RankStatus) -> Void, _ body: () -> pid_t
    ) throws(SystemError) -> pid_t {
        // The lock is held across the spawn so that the reaper cannot look up a pid that exits
        // before it is registered.
        let result: Result<pid_t, SystemError> = waiting.withLock { table in
            let pid = body()
            if pid < 0 { return .failure(.current("spawn")) }
            table[pid] = onExit
            return .success(pid)
        }
        let pid = try result.get()
        childrenAppeared.signal()
        return pid
    }

    private func run() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid < 0 {
                if errno == ECHILD { childrenAppeared.wait() }
                continue
            }
            let callback = waiting.withLock { $0.removeValue(forKey: pid) }
            guard let callback else { continue }
            let low = status & 0x7f
            callback(low == 0 ? .exited((status >> 8) & 0xff) : .signaled(low))
        }
    }
}
