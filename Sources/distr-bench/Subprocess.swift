@preconcurrency import Glibc
import DistrCore
import Foundation
import Synchronization

/// A child process with its stdout collected, for the benchmark's orchestration (`distr-master`,
/// `mpirun`, `ip`); workers are `WorkerProcess`es.
final class Subprocess: Sendable {
    let pid: pid_t
    private let output = Mutex<[UInt8]>([])
    private let exit = ChildExit()
    private let outputClosed = Latch()

    init(_ arguments: [String], environment: [String: String] = [:], stderrPath: String = "/dev/null") throws {
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let out = try FD.pipe()
        let err = open(stderrPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer { FD.close(err) }
        pid = try Spawner.spawn(
            SpawnRequest(arguments: arguments, environment: env.map { "\($0.key)=\($0.value)" }, stdout: out.write, stderr: err),
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
}
