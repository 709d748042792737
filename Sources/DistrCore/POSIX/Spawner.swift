@preconcurrency import Glibc
import CDistrSys
import Dispatch
import Synchronization

/// What to start and how to wire it.
public struct SpawnRequest: Sendable {
    public var arguments: [String]
    public var environment: [String]
    public var directory: String?
    /// Descriptor for the child's stdin; nil: `/dev/null`.
    public var stdin: Int32?
    public var stdout: Int32
    public var stderr: Int32
    /// Extra descriptors to hand over, as (source in this process, number in the child).
    public var inherited: [(source: Int32, target: Int32)] = []

    public init(
        arguments: [String], environment: [String], directory: String? = nil, stdin: Int32? = nil, stdout: Int32,
        stderr: Int32, inherited: [(source: Int32, target: Int32)] = []
    ) {
        self.arguments = arguments
        self.environment = environment
        self.directory = directory
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.inherited = inherited
    }
}

/// Starts processes with `posix_spawn`: own process group, default signal dispositions (so
/// SIGPIPE and SIGTERM work in the child even though the parent ignores or blocks them), an
/// empty signal mask, stdin from `/dev/null`, and only the listed descriptors inherited (every
/// other descriptor distr opens is close-on-exec).
///
/// All children of the process are reaped by one dedicated thread (`waitpid(-1)`), which hands
/// each status to the callback registered at spawn time. Orphaned descendants that the kernel
/// reparents to a subreaper are reaped by it too, so they never linger as zombies.
public enum Spawner {
    /// - Returns: the child's pid (also its process group id).
    /// - Throws: `SystemError` from `posix_spawn` (ENOENT when the program does not exist).
    public static func spawn(_ request: SpawnRequest, onExit: @escaping @Sendable (RankStatus) -> Void) throws(SystemError) -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdin = request.stdin {
            posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, request.stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, request.stderr, 2)
        for (source, target) in request.inherited { posix_spawn_file_actions_adddup2(&actions, source, target) }
        if let directory = request.directory { cdistr_spawn_addchdir(&actions, directory) }

        let argv = request.arguments.map { strdup($0) } + [nil]
        let envp = request.environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let program = request.arguments.first ?? ""
        return try ChildReaper.shared.spawnRegistered(onExit: onExit) { pid in
            program.contains("/")
                ? posix_spawn(&pid, program, &actions, &attributes, argv, envp)
                : posix_spawnp(&pid, program, &actions, &attributes, argv, envp)
        }
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
        onExit: @escaping @Sendable (RankStatus) -> Void, _ body: (inout pid_t) -> Int32
    ) throws(SystemError) -> pid_t {
        // The lock is held across the spawn so that the reaper cannot look up a pid that exits
        // before it is registered.
        let result: Result<pid_t, SystemError> = waiting.withLock { table in
            var pid: pid_t = 0
            let status = body(&pid)
            if status != 0 { return .failure(SystemError("posix_spawn", errno: status)) }
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
