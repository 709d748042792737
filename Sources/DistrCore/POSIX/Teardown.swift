/// The one way distr stops a child it started: SIGTERM, a grace period in which it may clean up
/// and exit, then SIGKILL; and in every case a wait until it has been reaped, so that nothing the
/// caller started outlives the call. The exit is learnt from the latch the spawn's `onExit`
/// opens (see `ChildExit`), never by polling.
package enum Teardown {
    /// What the signals go to.
    package enum Target: Sendable, Equatable {
        /// One process, while it has not been reaped. For a worker: its SIGTERM handler ends its
        /// jobs, and its process group also holds the sentinel, which must outlive it.
        case process(Int32)
        /// A whole process group (a rank and whatever it started), whether or not its leader
        /// has exited: what is left of the group gets SIGKILL when the wait ends.
        case processGroup(Int32)
    }

    /// Ends one child: SIGTERM, up to `grace` seconds for `exited` to open, SIGKILL, then waits
    /// for `exited`.
    /// - Returns: true when it exited within the grace, false when it took SIGKILL.
    @discardableResult
    package static func end(_ target: Target, grace: Double, exited: Latch) -> Bool {
        end([(target, exited)], grace: grace) == 0
    }

    /// Ends several children together: SIGTERM to all, one grace period for all, SIGKILL to
    /// those still running, then waits for every one.
    /// - Returns: how many took SIGKILL.
    @discardableResult
    package static func end(_ children: [(target: Target, exited: Latch)], grace: Double) -> Int {
        for child in children { send(.terminate, to: child.target, exited: child.exited) }
        let deadline = Deadline.after(grace)
        var killed = 0
        for child in children {
            let inTime = child.exited.wait(until: deadline)
            if !inTime { killed += 1 }
            // A group's leader may have gone while others in it still run: they go too.
            if !inTime || child.target.isGroup { send(.kill, to: child.target, exited: child.exited) }
        }
        for child in children { child.exited.wait() }
        return killed
    }

    private static func send(_ signal: Signal, to target: Target, exited: Latch) {
        switch target {
        case .process(let pid):
            // Once the latch is open the pid is free for reuse: never signal it then.
            guard !exited.isOpen else { return }
            try? signal.send(toProcess: pid)  // ESRCH: it has just exited; the latch says so.
        case .processGroup(let group):
            // A group id is not reused while any process is in the group.
            try? signal.send(toGroup: group)  // ESRCH: nothing is left in the group.
        }
    }
}

extension Teardown.Target {
    var isGroup: Bool {
        if case .processGroup = self { return true }
        return false
    }
}
