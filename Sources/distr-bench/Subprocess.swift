@preconcurrency import Glibc
import DistrCore
import Dispatch
import Foundation
import Synchronization

/// A child process with its stdout collected, for the benchmark's orchestration.
final class Subprocess: Sendable {
    let pid: pid_t
    private let output = Mutex<[UInt8]>([])
    private let done = DispatchSemaphore(value: 0)
    private let outputClosed = DispatchSemaphore(value: 0)
    /// Signalled whenever output arrives or ends.
    private let arrived = DispatchSemaphore(value: 0)
    private let status = Mutex<RankStatus?>(nil)

    init(_ arguments: [String], environment: [String: String] = [:], stderrPath: String = "/dev/null") throws {
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let out = try FD.pipe()
        let err = open(stderrPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer { FD.close(err) }
        let finished = done
        let box = StatusBox()
        pid = try Spawner.spawn(
            SpawnRequest(arguments: arguments, environment: env.map { "\($0.key)=\($0.value)" }, stdout: out.write, stderr: err)
        ) { result in
            box.value.withLock { $0 = result }
            finished.signal()
        }
        statusBox = box
        FD.close(out.write)
        let reader = out.read
        Thread { [self] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(reader, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                output.withLock { $0 += chunk[0..<n] }
                arrived.signal()
            }
            close(reader)
            outputClosed.signal()
            arrived.signal()
        }.start()
    }

    private final class StatusBox: Sendable { let value = Mutex<RankStatus?>(nil) }
    private let statusBox: StatusBox

    var text: String { String(decoding: output.withLock { $0 }, as: UTF8.self) }

    /// Waits until stdout holds a whole first line (the worker's "listening" line).
    func firstLine(timeout: Double) -> String? {
        let deadline = DispatchTime.now() + timeout
        while true {
            let current = text
            if let newline = current.firstIndex(of: "\n") { return String(current[..<newline]) }
            if outputClosed.wait(timeout: .now()) == .success {
                outputClosed.signal()
                return nil
            }
            if arrived.wait(timeout: deadline) == .timedOut { return nil }
        }
    }

    @discardableResult
    func wait() -> RankStatus {
        done.wait()
        done.signal()
        outputClosed.wait()
        outputClosed.signal()
        return statusBox.value.withLock { $0 } ?? .exited(-1)
    }

    func terminate() {
        kill(pid, SIGTERM)
        wait()
    }
}
