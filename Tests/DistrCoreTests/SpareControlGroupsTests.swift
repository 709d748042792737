import Glibc
import Synchronization
import Testing

@testable import DistrCore

/// `SpareControlGroups` on the machine's real cgroup v2 hierarchy, with real processes born in
/// the cgroups by the spawner (`clone3` with `CLONE_INTO_CGROUP`), as ranks are. Without a cgroup
/// v2 this process may write to (not root, no delegation) there is nothing to check: the worker
/// runs without cgroups there too.
@Suite struct SpareControlGroupsTests {
    /// Runs `body` with a parent cgroup of its own (under the place a worker would use), so that
    /// no other test or worker sees its cgroups; removed afterwards with whatever is left in it.
    static func withPlace(_ test: String, _ body: (String) throws -> Void) throws {
        guard case .success(let place) = ControlGroup.placeForJobs() else { return }
        let parent = try #require(
            try ControlGroup.create(under: place, name: "distr-spare-test-\(getpid())-\(test)"), "a cgroup of that name is there already")
        defer {
            // Not listable: gone, nothing to remove.
            let entries = (try? Directory(path: parent.path).entries()) ?? []  // See above.
            for entry in entries where entry.string.hasPrefix(SpareControlGroups.prefix) {
                ControlGroup(path: parent.path + "/" + entry.string).killAndRemove()
            }
            parent.killAndRemove()
        }
        try body(parent.path)
    }

    /// A pool named after this process with a start time it never had (a worker that is gone).
    static func pool(_ place: String, start: UInt64 = 1) -> SpareControlGroups {
        SpareControlGroups(place: place, owner: (getpid(), start))
    }

    /// How a spawned process ended, once it has.
    final class Exit: Sendable {
        let ended = Latch()
        let status = Mutex<RankStatus?>(nil)
    }

    /// Spawns `arguments` born in `group`, as the worker spawns a rank.
    static func spawn(_ arguments: [String], in group: OpenControlGroup) throws -> (pid: Int32, exit: Exit) {
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { FD.close(null) }
        let exit = Exit()
        let pid = try Spawner.spawn(
            SpawnRequest(
                arguments: arguments, environment: [], directory: "/", stdout: null, stderr: null, controlGroupDirectory: group.directory)
        ) { result in
            exit.status.withLock { $0 = result }
            exit.ended.open()
        }
        return (pid, exit)
    }

    /// Runs `/bin/true` born in `group` and returns how it ended.
    static func runTrue(in group: OpenControlGroup) throws -> RankStatus? {
        let process = try spawn(["/bin/true"], in: group)
        try #require(process.exit.ended.wait(until: .after(20)))
        return process.exit.status.withLock { $0 }
    }

    @Test func anEmptyCgroup_isKeptAndTakenByTheNextJob_whoseProcessesRunThere() throws {
        try Self.withPlace("kept") { place in
            let groups = Self.pool(place)
            defer { groups.removeAll() }
            let first = try groups.take()
            #expect(try Self.runTrue(in: first) == .exited(0))
            #expect(groups.release(first))
            #expect(groups.kept == [first.group])
            #expect(FileIO.exists(first.path))
            let second = try groups.take()
            #expect(second === first, "the kept cgroup is taken again, not a new one made")
            #expect(groups.kept.isEmpty)
            #expect(try Self.runTrue(in: second) == .exited(0))
            #expect(groups.release(second))
        }
    }

    /// What a job left running in its cgroup is ended and the cgroup removed, never kept: a
    /// process later born into a cgroup that was killed once is killed at birth on Linux 6.18.
    @Test func aCgroupThatStillHoldsAProcess_isKilledAndRemoved_andTheNextJobRunsInAFreshOne() throws {
        try Self.withPlace("killed") { place in
            let groups = Self.pool(place)
            defer { groups.removeAll() }
            let first = try groups.take()
            let sleeper = try Self.spawn(["/bin/sleep", "1000"], in: first)
            #expect(first.group.isEmpty == false)
            #expect(groups.release(first))
            #expect(sleeper.exit.ended.wait(until: .after(20)), "the process \(sleeper.pid) left in the cgroup was not ended")
            #expect(sleeper.exit.status.withLock { $0 } == .signaled(SIGKILL))
            #expect(groups.kept.isEmpty)
            #expect(!FileIO.exists(first.path))
            let next = try groups.take()
            #expect(next.path != first.path)
            #expect(try Self.runTrue(in: next) == .exited(0))
            #expect(groups.release(next))
        }
    }

    @Test func atMostLimitAreKept_theRestRemoved_andRemoveAllRemovesThem() throws {
        try Self.withPlace("limit") { place in
            let groups = Self.pool(place)
            defer { groups.removeAll() }
            let taken = try (0...SpareControlGroups.limit).map { _ in try groups.take() }
            #expect(Set(taken.map(\.path)).count == taken.count)
            for group in taken { #expect(groups.release(group)) }
            #expect(groups.kept == taken.prefix(SpareControlGroups.limit).map(\.group))
            #expect(!FileIO.exists(taken[SpareControlGroups.limit].path))
            groups.removeAll()
            #expect(groups.kept.isEmpty)
            for group in taken { #expect(!FileIO.exists(group.path)) }
        }
    }

    /// Empty cgroups a worker that is gone left (kept, or in use when it crashed) are removed by
    /// the next worker under the same parent, or by its sentinel (which names the dead worker);
    /// a live worker's are left alone, and so is one that still holds a process (the job
    /// record names it: whoever reclaims that job ends what is in it).
    @Test func leftoversOfWorkersThatAreGone_areRemoved_aLiveOnesAreNot() throws {
        try Self.withPlace("leftovers") { place in
            // A pid that has exited (and was reaped).
            let reaped = Latch()
            let child = try Spawner.spawn(SpawnRequest(arguments: ["/bin/true"], environment: [], directory: "/", stdout: 1, stderr: 2)) { _ in
                reaped.open()
            }
            try #require(reaped.wait(until: .after(20)))
            let neverStarted = Self.pool(place, start: 4)
            let exited = SpareControlGroups(place: place, owner: (child, 5))
            let live = SpareControlGroups(place: place, owner: (getpid(), ProcessTable.ownStartTime))
            defer { for pool in [neverStarted, exited, live] { pool.removeAll() } }
            let kept = try neverStarted.take()
            #expect(neverStarted.release(kept))
            let inUse = try exited.take()
            defer { inUse.closeDescriptors() }
            let holding = try exited.take()
            let escaped = try Self.spawn(["/bin/sleep", "1000"], in: holding)
            defer {
                holding.closeDescriptors()
                holding.group.killAndRemove()
                #expect(escaped.exit.ended.wait(until: .after(20)), "the test's process \(escaped.pid) was not ended")
            }
            let liveGroup = try live.take()
            defer { liveGroup.closeDescriptors() }
            #expect(try Self.runTrue(in: liveGroup) == .exited(0))
            #expect(SpareControlGroups.removeLeftovers(under: place) == 2)
            #expect(!FileIO.exists(kept.path), "a start time this process never had: its worker is gone")
            #expect(!FileIO.exists(inUse.path), "its pid has exited")
            #expect(FileIO.exists(liveGroup.path), "a live worker's cgroup was removed")
            #expect(FileIO.exists(holding.path) && holding.group.isEmpty == false, "a cgroup holding a process was removed, or emptied")
            // The sentinel knows its worker is dead before /proc may say so.
            #expect(SpareControlGroups.removeLeftovers(under: place, deadWorker: getpid()) == 1)
            #expect(!FileIO.exists(liveGroup.path))
        }
    }
}
