import Synchronization

/// How a child started by `Spawner` ended. Pass `record` as the spawn's `onExit`; then any
/// number of threads can wait on `exited` (a `Latch`, so with a deadline) and read `status`.
package final class ChildExit: Sendable {
    /// Opens when the reaper has reaped the child: from then on its pid may be reused.
    package let exited = Latch()
    private let recorded = Mutex<RankStatus?>(nil)

    package init() {}

    /// Stores the status and opens `exited`. The reaper thread calls it once.
    package func record(_ status: RankStatus) {
        recorded.withLock { $0 = status }
        exited.open()
    }

    /// The status once the child has been reaped; nil while it runs.
    package var status: RankStatus? { recorded.withLock { $0 } }

    /// Waits for the child to be reaped; its status, or nil when the deadline passed first.
    @discardableResult
    package func wait(until deadline: Deadline = .never) -> RankStatus? {
        exited.wait(until: deadline) ? status : nil
    }
}
