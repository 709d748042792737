import Foundation

/// Runs blocking work on a thread of its own and resumes the caller with its result, so that
/// blocking system calls never occupy Swift's cooperative pool.
func onDedicatedThread<T: Sendable>(name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = name
        thread.start()
    }
}
