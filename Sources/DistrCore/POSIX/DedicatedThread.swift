@preconcurrency import Glibc
import CDistrSys

/// Dedicated threads for blocking work (accept, read, waitpid, epoll_wait), which must never run
/// on Swift's cooperative pool. Plain pthreads: the executables do not need Foundation.
package enum Threads {
    private final class Box {
        let body: @Sendable () -> Void
        let name: String
        init(_ body: @escaping @Sendable () -> Void, name: String) {
            self.body = body
            self.name = name
        }
    }

    /// Starts `body` on a new detached thread named `name`.
    package static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body, name: name)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(
            &thread, nil,
            { raw in
                guard let raw else { return nil }
                let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
                cdistr_set_thread_name(box.name)
                box.body()
                return nil
            }, box)
        if status == 0 {
            pthread_detach(thread)
        } else {
            // Without a thread the work cannot proceed; run it here rather than lose it.
            let box = Unmanaged<Box>.fromOpaque(box).takeRetainedValue()
            box.body()
        }
    }
}

/// Runs blocking work on a thread of its own and resumes the caller with its result, so that
/// blocking system calls never occupy Swift's cooperative pool.
func onDedicatedThread<T: Sendable>(name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Threads.start(name: name) { continuation.resume(with: Result { try body() }) }
    }
}
