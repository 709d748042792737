@preconcurrency import Glibc
import DistrCore
import Foundation
import Synchronization

/// A child process with its stdout collected (or sent to a file), for the benchmark's
/// orchestration (`distr-master`, `mpirun`, `ip`); workers are `WorkerProcess`es.
final class Subprocess: Sendable {
    let pid: pid_t
    private let output = Mutex<[UInt8]>([])
    private let exit = ChildExit()
    private let outputClosed = Latch()

    /// - Parameters:
    ///   - stdoutPath: where stdout goes (created or truncated); nil: collected, see `text`.
    ///   - stdinPath: what stdin reads; nil: /dev/null.
    /// This process's environment as `NAME=value` entries, made once: the launch cases time
    /// whole commands of a few milliseconds, and converting Foundation's dictionary for every
    /// spawn would be counted against them.
    private static let inherited = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }

    init(
        _ arguments: [String], environment: [String: String] = [:], stderrPath: String = "/dev/null", stdoutPath: String? = nil,
        stdinPath: String? = nil
    ) throws {
        let env: [String]
        if environment.isEmpty {
            env = Self.inherited
        } else {
            var merged = ProcessInfo.processInfo.environment
            for (key, value) in environment { merged[key] = value }
            env = merged.map { "\($0.key)=\($0.value)" }
        }
        let err = open(stderrPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard err >= 0 else { throw SystemError("open \(stderrPath)", errno: errno) }
        defer { FD.close(err) }
        var input: Int32?
        if let stdinPath {
            let fd = open(stdinPath, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError("open \(stdinPath)", errno: errno) }
            input = fd
        }
        defer { if let input { FD.close(input) } }
        if let stdoutPath {
            let out = open(stdoutPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard out >= 0 else { throw SystemError("open \(stdoutPath)", errno: errno) }
            defer { FD.close(out) }
            pid = try Spawner.spawn(
                SpawnRequest(arguments: arguments, environment: env, stdin: input, stdout: out, stderr: err),
                onExit: exit.record)
            outputClosed.open()
            return
        }
        let out = try FD.pipe()
        pid = try Spawner.spawn(
            SpawnRequest(arguments: arguments, environment: env, stdin: input, stdout: out.write, stderr: err),
            onExit: exit.record)
        FD.close(out.write)
        let reader = out.read
        Thread { [self] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(reader, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                output.withLock { $0 += chunk[0..<n] }
            }
            close(reader)
            outputClosed.open()
        }.start()
    }

    var text: String { String(decoding: output.withLock { $0 }, as: UTF8.self) }

    /// Waits for the exit and the end of its output.
    @discardableResult
    func wait() -> RankStatus {
        let status = exit.wait()
        outputClosed.wait()
        return status ?? .exited(-1)
    }

    /// Waits until `deadline`; past it, kills its process group (what it started too) and
    /// returns nil.
    func wait(until deadline: Deadline) -> RankStatus? {
        if exit.wait(until: deadline) != nil { return wait() }
        _ = Glibc.kill(-pid, SIGKILL)
        _ = Glibc.kill(pid, SIGKILL)
        wait()
        return nil
    }

    /// Ends it at once (a busy loop the bench started).
    func kill() {
        _ = Glibc.kill(pid, SIGKILL)
        wait()
    }
}
