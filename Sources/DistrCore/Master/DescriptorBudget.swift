import Synchronization

/// How many descriptors a group of threads may hold at once beyond what each needs anyway.
///
/// `shipping`: the files the master's serve threads keep open while their pieces wait in a
/// frame (`Launcher.sendFiles`). There is one serve thread per worker, and a 256 KiB frame can
/// hold thousands of small files; without a bound, shipping many small files to many workers
/// ran the master out of descriptors (EMFILE). A quarter of the descriptor limit is shared by
/// all of them: 256 with the usual 1024.
package final class DescriptorBudget: Sendable {
    package static let shipping = DescriptorBudget(limit: max(8, CurrentProcess.openFileLimit / 4))

    package let limit: Int
    private let used = Atomic<Int>(0)

    package init(limit: Int) { self.limit = limit }

    /// Takes one descriptor's place; false (nothing taken) when all are in use.
    package func take() -> Bool {
        if used.add(1, ordering: .relaxed).newValue <= limit { return true }
        used.subtract(1, ordering: .relaxed)
        return false
    }

    /// Gives back `count` places taken with `take`.
    package func release(_ count: Int) {
        if count > 0 { used.subtract(count, ordering: .relaxed) }
    }
}
