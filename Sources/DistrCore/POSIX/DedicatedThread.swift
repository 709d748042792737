@preconcurrency import Glibc
import CDistrSys
import Dispatch
import Synchronization

/// Dedicated threads for blocking work (accept, read, waitpid, epoll_wait), which must never run
/// on Swift's cooperative pool. Plain pthreads: the executables do not need Foundation.
package enum Threads {
    /// Runs `body` on a dedicated thread named `name` (see `ThreadPool`).
    package static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        ThreadPool.shared.start(name: name, body)
    }
}

/// Dedicated threads that wait a while for more work when theirs is done, instead of exiting:
/// a worker starts four threads per job and the master two per worker, and each new thread
/// costs a clone, a stack and its first page faults. At most `idleLimit` threads wait, each for
/// `idleSeconds`; the rest end. A reused thread is renamed. It keeps the signal mask it was
/// made with (a copy of its maker's): the executables block their signals before any thread
/// exists, so all of theirs have the same. A thread that spawned a child with a parent-death
/// signal (`SpawnRequest`) lives on after its work, so that signal comes with the process's
/// death, or when the thread ends later, not when the work is done.
final class ThreadPool: Sendable {
    static let shared = ThreadPool(idleLimit: 32, idleSeconds: 5)

    /// What a thread is given to run. The body is let go once it has run: a waiting thread must
    /// not keep what the last one captured (a job, its connection) alive.
    private final class Work: Sendable {
        let pool: ThreadPool
        let body: Mutex<(@Sendable () -> Void)?>
        let name: String
        init(_ body: @escaping @Sendable () -> Void, name: String, pool: ThreadPool) {
            self.pool = pool
            self.body = Mutex(body)
            self.name = name
        }

        func run() {
            cdistr_set_thread_name(name)
            let body = self.body.withLock { body in
                defer { body = nil }
                return body
            }
            body?()
        }
    }

    /// A thread waiting for work: `start` hands it over and signals.
    private final class Idle: Sendable {
        let work = Mutex<Work?>(nil)
        let wake = DispatchSemaphore(value: 0)
    }

    let idleLimit: Int
    let idleSeconds: Double
    private let idle = Mutex<[Idle]>([])
    /// Threads made so far.
    let created = Atomic<Int>(0)

    init(idleLimit: Int, idleSeconds: Double) {
        self.idleLimit = idleLimit
        self.idleSeconds = idleSeconds
    }

    /// Threads waiting for work now.
    var idleCount: Int { idle.withLock { $0.count } }

    /// Runs `body` on a dedicated thread named `name`: a waiting one, or a new detached one.
    func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let work = Work(body, name: name, pool: self)
        if let waiting = idle.withLock({ $0.popLast() }) {
            waiting.work.withLock { $0 = work }
            waiting.wake.signal()
            return
        }
        created.add(1, ordering: .relaxed)
        let box = Unmanaged.passRetained(work).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(
            &thread, nil,
            { raw in
                guard let raw else { return nil }
                let first = Unmanaged<Work>.fromOpaque(raw).takeRetainedValue()
                let pool = first.pool
                first.run()
                while let next = pool.waitForWork() { next.run() }
                return nil
            }, box)
        if status == 0 {
            pthread_detach(thread)
        } else {
            // Without a thread the work cannot proceed; run it here rather than lose it.
            Unmanaged<Work>.fromOpaque(box).takeRetainedValue().run()
        }
    }

    /// Waits up to `idleSeconds` for `start` to hand this thread more work; nil: none came, or
    /// enough threads wait already (the thread ends).
    private func waitForWork() -> Work? {
        let me = Idle()
        let waits = idle.withLock { list -> Bool in
            guard list.count < idleLimit else { return false }
            list.append(me)
            return true
        }
        guard waits else { return nil }
        if me.wake.wait(timeout: .now() + idleSeconds) == .timedOut {
            // Still listed: taken off here, and no work can come. Not listed: `start` took this
            // thread and signals at once.
            let left = idle.withLock { list -> Bool in
                guard let index = list.firstIndex(where: { $0 === me }) else { return false }
                list.remove(at: index)
                return true
            }
            if left { return nil }
            me.wake.wait()
        }
        return me.work.withLock { $0 }
    }
}

/// Runs blocking work on a thread of its own and resumes the caller with its result, so that
/// blocking system calls never occupy Swift's cooperative pool.
func onDedicatedThread<T: Sendable>(name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Threads.start(name: name) { continuation.resume(with: Result { try body() }) }
    }
}
