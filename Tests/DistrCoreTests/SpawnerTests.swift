import CDistrSys
import Foundation
import Synchronization
import Testing

@testable import DistrCore

/// Spawning as ranks need it: own process group, default signals, empty mask, stdin from
/// /dev/null, the working directory, only the listed descriptors, and death with the spawner.
@Suite struct SpawnerTests {
    init() { Signals.ignorePipe() }

    /// Runs `script` with /bin/sh and returns its exit status and stdout.
    static func run(
        _ script: String, directory: String? = nil, inherited: [(source: Int32, target: Int32)] = [],
        controlGroup: (procs: Int32?, directory: Int32?) = (nil, nil)
    ) throws -> (status: RankStatus, output: String) {
        let out = try FD.pipe()
        let done = Latch()
        let status = Mutex<RankStatus?>(nil)
        _ = try Spawner.spawn(
            SpawnRequest(
                arguments: ["/bin/sh", "-c", script], environment: ["PATH=/usr/bin:/bin"], directory: directory,
                stdout: out.write, stderr: out.write, inherited: inherited, controlGroupProcs: controlGroup.procs,
                controlGroupDirectory: controlGroup.directory)
        ) { result in
            status.withLock { $0 = result }
            done.open()
        }
        FD.close(out.write)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try FD.read(out.read, into: &chunk)
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        FD.close(out.read)
        try #require(done.wait(until: .after(20)))
        return (status.withLock { $0 } ?? .exited(-1), String(decoding: bytes, as: UTF8.self))
    }

    @Test func child_leadsItsOwnProcessGroupWithStdinFromDevNullInItsDirectory() throws {
        let (status, output) = try Self.run(
            "echo $$ $(cut -d' ' -f5 /proc/$$/stat) $(readlink /proc/self/fd/0) $(pwd)", directory: "/usr")
        #expect(status == .exited(0))
        let fields = output.split(separator: " ").map(String.init)
        try #require(fields.count == 4, "\(output)")
        #expect(fields[0] == fields[1], "not its own process group leader: \(output)")
        #expect(fields[2] == "/dev/null")
        #expect(fields[3] == "/usr\n")
    }

    @Test func child_hasDefaultSignalsAndAnEmptyMask_evenWhenTheSpawnerIgnoresOrBlocksThem() throws {
        // This process ignores SIGPIPE; the thread spawning blocks SIGTERM.
        let blocked = Mutex<(RankStatus, String)?>(nil)
        let done = Latch()
        Threads.start(name: "blocking-spawner") {
            Signals.block([.terminate])
            blocked.withLock { $0 = try? Self.run("exec grep -E '^Sig(Ign|Blk)' /proc/self/status") }  // a failure shows as nil below
            done.open()
        }
        try #require(done.wait(until: .after(20)))
        let (status, output) = try #require(blocked.withLock { $0 })
        #expect(status == .exited(0))
        #expect(output == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", "\(output)")
    }

    /// Born in the job's cgroup (clone3 with CLONE_INTO_CGROUP, given its directory), or moved
    /// there through `cgroup.procs` (the fallback): either way in it before the program runs,
    /// with the same process group, signals and descriptors as any rank.
    @Test(arguments: [true, false])
    func child_runsInItsControlGroup_bornThereOrMovedThere(born: Bool) throws {
        // Without a cgroup v2 this process may write to (not root, no delegation) there is
        // nothing to check: the worker runs without cgroups there too.
        guard case .success(let place) = ControlGroup.placeForJobs() else { return }
        let name = "distr-spawner-test-\(getpid())-\(born)"
        let group = try #require(try ControlGroup.create(under: place, name: name), "a cgroup of that name is there already")
        defer { group.killAndRemove() }
        let procs = try group.openProcs()
        let directory = try group.openDirectory()
        defer {
            FD.close(procs)
            FD.close(directory)
        }
        let (status, output) = try Self.run(
            "exec cat /proc/self/cgroup /proc/self/status", controlGroup: (born ? nil : procs, born ? directory : nil))
        #expect(status == .exited(0))
        let own = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8).split(separator: "\n").first { $0.hasPrefix("0::") }
        let parent = String(try #require(own).dropFirst(3))
        let expected = "0::" + (parent == "/" ? "" : parent) + "/" + name
        #expect(output.split(separator: "\n").contains { $0 == expected }, "\(output)")
        #expect(output.contains("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"), "\(output)")
    }

    /// A child that fails before its program runs (here: no such working directory) is a spawn
    /// error with the child's errno, on the clone3 path too (it reports through a pipe).
    @Test func childBornInItsControlGroup_reportsAFailureBeforeExec() throws {
        guard case .success(let place) = ControlGroup.placeForJobs() else { return }  // As above.
        let group = try #require(
            try ControlGroup.create(under: place, name: "distr-spawner-fail-\(getpid())"), "a cgroup of that name is there already")
        defer { group.killAndRemove() }
        let directory = try group.openDirectory()
        defer { FD.close(directory) }
        #expect(throws: SystemError("spawn", errno: ENOENT)) {
            _ = try Spawner.spawn(
                SpawnRequest(
                    arguments: ["/bin/true"], environment: [], directory: "/nonexistent-directory-\(getpid())", stdout: 1, stderr: 2,
                    controlGroupDirectory: directory)
            ) { _ in }
        }
    }

    @Test func child_getsOnlyTheListedDescriptors() throws {
        let extra = try FD.pipe()
        defer {
            FD.close(extra.read)
            FD.close(extra.write)
        }
        // The shell replaces itself (it blocks signals and moves descriptors around while it forks).
        let (status, output) = try Self.run("exec ls /proc/self/fd", inherited: [(extra.write, 5)])
        #expect(status == .exited(0))
        // 0, 1, 2, the listed 5, and the one ls reads the directory with (3): nothing this process opened.
        #expect(output.split(separator: "\n") == ["0", "1", "2", "3", "5"], "\(output)")
    }

    @Test func programThatDoesNotExistOrIsNotExecutable_isASpawnError() throws {
        #expect(throws: SystemError("execve", errno: ENOENT)) {
            _ = try Spawner.spawn(SpawnRequest(arguments: ["no-such-program-here"], environment: [], stdout: 1, stderr: 2)) { _ in }
        }
        #expect(throws: SystemError.self) {
            _ = try Spawner.spawn(SpawnRequest(arguments: ["/etc/hostname"], environment: [], stdout: 1, stderr: 2)) { _ in }
        }
    }

    @Test func signallingTheGroup_reachesTheChildrenToo() throws {
        let out = try FD.pipe()
        let done = Latch()
        let status = Mutex<RankStatus?>(nil)
        let pid = try Spawner.spawn(
            SpawnRequest(
                arguments: ["/bin/sh", "-c", "sleep 100 & echo $!; wait"], environment: ["PATH=/usr/bin:/bin"], stdout: out.write,
                stderr: 2)
        ) { result in
            status.withLock { $0 = result }
            done.open()
        }
        FD.close(out.write)
        defer { FD.close(out.read) }
        var chunk = [UInt8](repeating: 0, count: 64)
        let n = try FD.read(out.read, into: &chunk)
        let child = try #require(pid_t(String(decoding: chunk[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        ProcessTable.signalGroup(pid, SIGKILL)
        #expect(done.wait(until: .after(20)))
        #expect(status.withLock { $0 } == .signaled(SIGKILL))
        // The background sleep was in the same group.
        let fd = cdistr_pidfd_open(child)
        if fd >= 0 {
            defer { FD.close(fd) }
            #expect(try FD.waitReadable(fd, until: .after(20)))
        }
    }

    @Test func childWithAParentDeathSignal_diesWhenTheThreadThatSpawnedItEnds() throws {
        let done = Latch()
        let status = Mutex<RankStatus?>(nil)
        let spawned = Latch()
        // A thread of its own, not one of `Threads`: a pool thread waits for more work after
        // its own and, in a busy process, may get some and live on indefinitely.
        let spawner = Thread {
            // The spawning thread ends right after the spawn: the kernel then sends the signal.
            _ = try? Spawner.spawn(  // a failure leaves `done` closed, which the wait below reports
                SpawnRequest(
                    arguments: ["/bin/sleep", "100"], environment: [], stdout: 1, stderr: 2, parentDeathSignal: .kill)
            ) { result in
                status.withLock { $0 = result }
                done.open()
            }
            spawned.open()
        }
        spawner.start()
        #expect(spawned.wait(until: .after(20)))
        #expect(done.wait(until: .after(20)), "the child outlived the thread that spawned it")
        #expect(status.withLock { $0 } == .signaled(SIGKILL))
    }
}
