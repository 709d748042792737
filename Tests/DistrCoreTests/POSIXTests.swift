import Dispatch
import Foundation
import Synchronization
import Testing

@testable import DistrCore

/// The POSIX wrappers on real pipes, socket pairs and files: ownership, would-block as a
/// result, and errors that name their errno.
@Suite struct POSIXTests {
    /// Two owned descriptors (noncopyable values cannot travel in a tuple).
    struct Ends: ~Copyable {
        let first: FileDescriptor
        let second: FileDescriptor
    }

    /// A pipe: `first` reads, `second` writes.
    func ownedPipe() throws -> Ends {
        let (read, write) = try FD.pipe()
        return Ends(first: FileDescriptor(adopting: read), second: FileDescriptor(adopting: write))
    }

    func ownedSocketPair(_ kind: UnixSocket.Kind = .stream) throws -> Ends {
        let (a, b) = try UnixSocket.pair(kind)
        return Ends(first: FileDescriptor(adopting: a), second: FileDescriptor(adopting: b))
    }

    @Test func memoryEqual_comparesLengthAndEveryByte() {
        let bytes = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var last = bytes
        last[last.count - 1] ^= 1
        func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.withUnsafeBytes { x in b.withUnsafeBytes { Memory.equal(x, $0) } } }
        #expect(equal(bytes, bytes) && equal([], []))
        #expect(!equal(bytes, last) && !equal(bytes, Array(bytes.dropLast())) && !equal([], [0]))
    }

    @Test func memoryFirstOffset_findsTheFirstWholeOccurrence() {
        func offset(_ needle: String, _ haystack: String) -> Int? {
            Array(haystack.utf8).withUnsafeBytes { text in Array(needle.utf8).withUnsafeBytes { Memory.firstOffset(of: $0, in: text) } }
        }
        #expect(offset("abc", "ababcabc") == 2)
        #expect(offset("abc", "abc") == 0)
        #expect(offset("abc", "xxab") == nil)
        #expect(offset("b", "") == nil)
        #expect(offset("", "abc") == nil)
    }

    /// The job cgroups' place: the mount point of the line whose type after " - " is cgroup2,
    /// wherever that line is, and nil when there is none (a "cgroup2fs" type is not it).
    @Test func cgroup2MountPoint_isTheFifthFieldOfTheCgroup2Line() {
        let lines = [
            "22 1 0:21 / /proc rw,nosuid - proc proc rw",
            "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev shared:9 - cgroup2 cgroup2 rw,nsdelegate",
            "36 24 0:31 / /mnt/other rw - cgroup2 cgroup2 rw",
        ]
        #expect(ControlGroup.cgroup2MountPoint(mountinfo: Array(lines.joined(separator: "\n").utf8)) == "/sys/fs/cgroup")
        #expect(ControlGroup.cgroup2MountPoint(mountinfo: Array(lines[1...].joined(separator: "\n").utf8)) == "/sys/fs/cgroup")
        #expect(ControlGroup.cgroup2MountPoint(mountinfo: Array((lines[0] + "\n" + "40 1 0:5 / /x rw - cgroup2fs a rw\n").utf8)) == nil)
        #expect(ControlGroup.cgroup2MountPoint(mountinfo: Array("1 2 - cgroup2 cgroup2 rw".utf8)) == nil)
        #expect(ControlGroup.cgroup2MountPoint(mountinfo: []) == nil)
    }

    @Test func absolutePath_joinsRelativePathsToTheWorkingDirectory() throws {
        let here = FileManager.default.currentDirectoryPath
        #expect(try CurrentProcess.absolutePath("/var/tmp/x") == "/var/tmp/x")
        #expect(try CurrentProcess.absolutePath("jobs") == here + "/jobs")
        #expect(try CurrentProcess.absolutePath("./jobs/a") == here + "/jobs/a")
        #expect(try CurrentProcess.absolutePath(".") == here)
        #expect(try CurrentProcess.absolutePath("../up") == here + "/../up")
    }

    func readAll(_ fd: Int32, count: Int) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: count)
        while result.count < count {
            let n = try FD.read(fd, into: &chunk)
            if n == 0 { break }
            result += chunk[0..<n]
        }
        return result
    }

    /// `Signals.settle` takes a signal that arrived before it and was not taken yet (what keeps
    /// a Ctrl-C typed between two commands of the remote shell from ending the second), and
    /// takes nothing otherwise. SIGUSR2, blocked in this thread only, sent to this thread only.
    @Test func signalsSettle_takesASignalThatArrivedBefore() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR2)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &set, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        #expect(!Signals.settle(Signal(rawValue: SIGUSR2)))
        pthread_kill(pthread_self(), SIGUSR2)
        #expect(Signals.settle(Signal(rawValue: SIGUSR2)))
        #expect(!Signals.settle(Signal(rawValue: SIGUSR2)))
    }

    @Test func fileDescriptor_closeEndsTheStreamForTheReader() throws {
        let pipe = try ownedPipe()
        let reader = pipe.first
        let writer = pipe.second
        try writer.writeAll([7])
        writer.close()
        var buffer = [UInt8](repeating: 0, count: 4)
        #expect(try reader.read(into: &buffer) == 1)
        #expect(try reader.read(into: &buffer) == 0)
    }

    @Test func fileDescriptor_closesWhenItGoesAway() throws {
        let (readEnd, writeEnd) = try FD.pipe()
        defer { FD.close(readEnd) }
        do {
            let writer = FileDescriptor(adopting: writeEnd)
            try writer.writeAll([1, 2])
        }
        // The only write end is gone: the reader sees the bytes, then end of stream.
        #expect(try readAll(readEnd, count: 3) == [1, 2])
    }

    @Test func fileDescriptor_releaseHandsOverWithoutClosing() throws {
        let pipe = try ownedPipe()
        let reader = pipe.first
        let writer = pipe.second
        let raw = writer.release()
        try FD.writeAll(raw, [9])
        FD.close(raw)
        var buffer = [UInt8](repeating: 0, count: 4)
        #expect(try reader.read(into: &buffer) == 1)
        #expect(buffer[0] == 9)
    }

    @Test func readNonblocking_reportsWouldBlockThenBytesThenEndOfStream() throws {
        let pipe = try ownedPipe()
        let reader = pipe.first
        let writer = pipe.second
        FD.setNonblocking(reader.rawValue)
        var buffer = [UInt8](repeating: 0, count: 8)
        let empty = try buffer.withUnsafeMutableBytes { try FD.readNonblocking(reader.rawValue, into: $0) }
        #expect(empty == .wouldBlock)
        try writer.writeAll([1, 2, 3])
        let three = try buffer.withUnsafeMutableBytes { try FD.readNonblocking(reader.rawValue, into: $0) }
        #expect(three == .bytes(3))
        writer.close()
        let end = try buffer.withUnsafeMutableBytes { try FD.readNonblocking(reader.rawValue, into: $0) }
        #expect(end == .endOfStream)
    }

    @Test func writeNonblocking_sendsBothPartsInOrder() throws {
        let sockets = try ownedSocketPair()
        let mine = sockets.first
        let theirs = sockets.second
        let header: [UInt8] = [1, 2]
        let body: [UInt8] = [3, 4, 5]
        let result = try header.withUnsafeBytes { h in try body.withUnsafeBytes { try FD.writeNonblocking(mine.rawValue, h, $0) } }
        #expect(result == .bytes(5))
        #expect(try readAll(theirs.rawValue, count: 5) == [1, 2, 3, 4, 5])
    }

    /// A pipe asked for 256 KiB takes that much without its writer waiting.
    @Test func setPipeSize_growsThePipe() throws {
        let (readEnd, writeEnd) = try FD.pipe()
        defer { for fd in [readEnd, writeEnd] { FD.close(fd) } }
        let size = try #require(FD.setPipeSize(readEnd, bytes: 256 * 1024))
        #expect(size >= 256 * 1024)
        FD.setNonblocking(writeEnd)
        let chunk = [UInt8](repeating: 7, count: 256 * 1024)
        let result = try chunk.withUnsafeBytes { try FD.writeNonblocking(writeEnd, $0) }
        #expect(result == .bytes(chunk.count))
    }

    /// Pieces written with one `writev` arrive whole and in order, also when the descriptor
    /// takes them in short writes (a nonblocking pipe smaller than the whole).
    @Test func writeAllPieces_writesEveryPieceInOrder() throws {
        let (readEnd, writeEnd) = try FD.pipe()
        defer { FD.close(readEnd) }
        FD.setNonblocking(writeEnd)
        let pieces: [[UInt8]] = [[1, 2, 3], [], [UInt8](repeating: 4, count: 200_000), [5], [UInt8](repeating: 6, count: 70_000)]
        let expected = Array(pieces.joined())
        let received = Mutex<[UInt8]>([])
        let done = DispatchSemaphore(value: 0)
        Threads.start(name: "pipe-reader") {
            let bytes = (try? self.readAll(readEnd, count: expected.count)) ?? []  // A failed read shows as a mismatch below.
            received.withLock { $0 = bytes }
            done.signal()
        }
        try pieces[0].withUnsafeBytes { a in
            try pieces[2].withUnsafeBytes { c in
                try pieces[3].withUnsafeBytes { d in
                    try pieces[4].withUnsafeBytes { e in
                        try FD.writeAll(writeEnd, [a, UnsafeRawBufferPointer(start: nil, count: 0), c, d, e])
                    }
                }
            }
        }
        FD.close(writeEnd)
        done.wait()
        #expect(received.withLock { $0 } == expected)
    }

    @Test func writeNonblocking_reportsWouldBlockWhenTheSocketIsFull() throws {
        let sockets = try ownedSocketPair()
        let mine = sockets.first
        let theirs = sockets.second
        FD.setNonblocking(mine.rawValue)
        let chunk = [UInt8](repeating: 0xAB, count: 64 * 1024)
        var written = 0
        var last = IOResult.bytes(0)
        // Socket buffers are a few MiB at most: the bound only keeps a broken wrapper from spinning.
        for _ in 0..<10_000 {
            last = try chunk.withUnsafeBytes { try FD.writeNonblocking(mine.rawValue, $0) }
            guard case .bytes(let n) = last else { break }
            written += n
        }
        #expect(last == .wouldBlock)
        #expect(written > 0)
        _ = theirs
    }

    @Test func systemError_namesItsErrno() throws {
        let pipe = try ownedPipe()
        let reader = pipe.first
        let writer = pipe.second
        writer.close()
        // Writing to a read end is EBADF on Linux.
        let error = #expect(throws: SystemError.self) { try FD.writeAll(reader.rawValue, [1]) }
        #expect(error?.code == .badFileDescriptor)
        #expect(error?.code.name == "EBADF")
        #expect(Errno.wouldBlock.name == "EAGAIN")
        #expect(Errno(rawValue: 9999).name == "errno 9999")
        #expect(Errno.noSuchFile.description == "ENOENT (No such file or directory)")
        #expect(Errno.connectionReset.isPeerGone && Errno.brokenPipe.isPeerGone && !Errno.exists.isPeerGone)
    }

    @Test func fileDescriptorOpen_failsWithTheErrnoOfTheCause() throws {
        let directory = try makeTemporaryDirectory()
        defer { FileIO.removeTree(directory) }
        let missing = #expect(throws: SystemError.self) { _ = try FileDescriptor.open(directory + "/missing", .readOnly) }
        #expect(missing?.code == .noSuchFile)
        #expect(missing?.call == "open")

        let root = try FileDescriptor.open(directory, .readOnly, options: [.directory])
        let name = Array("file".utf8)
        let file = try FileDescriptor.open(name, in: root.rawValue, .writeOnly, options: [.create, .exclusiveCreate], permissions: 0o640)
        try file.setPermissions(0o640)
        file.close()
        #expect(try FileStatus(path: directory + "/file").permissions == 0o640)
        #expect(try FileStatus(path: directory + "/file").kind == .regular)
        let again = #expect(throws: SystemError.self) {
            _ = try FileDescriptor.open(name, in: root.rawValue, .writeOnly, options: [.create, .exclusiveCreate])
        }
        #expect(again?.code == .exists)
        let notDirectory = #expect(throws: SystemError.self) {
            _ = try FileDescriptor.open(name, in: root.rawValue, .readOnly, options: [.directory])
        }
        #expect(notDirectory?.code == .notDirectory)

        try FD.makeDirectory(Array("sub".utf8), in: root.rawValue)
        let twice = #expect(throws: SystemError.self) { try FD.makeDirectory(Array("sub".utf8), in: root.rawValue) }
        #expect(twice?.code == .exists)
        #expect(try FileStatus(path: directory + "/sub").kind == .directory)
        try FD.unlink(name, in: root.rawValue)
        let gone = #expect(throws: SystemError.self) { try FD.unlink(name, in: root.rawValue) }
        #expect(gone?.code == .noSuchFile)
    }

    @Test func fileStatus_tellsASocketFromAPipe() throws {
        let sockets = try ownedSocketPair()
        let mine = sockets.first
        let theirs = sockets.second
        let pipe = try ownedPipe()
        let reader = pipe.first
        let writer = pipe.second
        #expect(try FileStatus(descriptor: mine.rawValue).kind == .socket)
        #expect(try FileStatus(descriptor: reader.rawValue).kind == .pipe)
        _ = theirs
        _ = writer
    }

    @Test func socketShutdownWrite_endsThePeersStream() throws {
        let sockets = try ownedSocketPair()
        let mine = sockets.first
        let theirs = sockets.second
        try FD.writeAll(mine.rawValue, [5])
        try Socket.shutdown(mine.rawValue, .write)
        #expect(try readAll(theirs.rawValue, count: 2) == [5])
    }

    @Test func unixSocket_passesADescriptorWithAPacket() throws {
        let sockets = try ownedSocketPair(.seqpacket)
        let mine = sockets.first
        let theirs = sockets.second
        let pipe = try ownedPipe()
        let reader = pipe.first
        let writer = pipe.second
        try [UInt8]([1, 2, 3]).withUnsafeBytes { try UnixSocket.send(mine.rawValue, $0, passing: writer.rawValue) }
        writer.close()
        var buffer = [UInt8](repeating: 0, count: 16)
        let (count, passed) = try buffer.withUnsafeMutableBytes { try UnixSocket.receive(theirs.rawValue, into: $0) }
        #expect(count == 3)
        try #require(passed >= 0)
        let copy = FileDescriptor(adopting: passed)
        try copy.writeAll([42])
        copy.close()
        #expect(try readAll(reader.rawValue, count: 2) == [42])
    }

    @Test func epoll_reportsReadyDescriptorsOnlyWhileArmed() throws {
        let epoll = try Epoll()
        let sockets = try ownedSocketPair()
        let mine = sockets.first
        let theirs = sockets.second
        try epoll.add(mine.rawValue)
        var ready = [Int32](repeating: -1, count: 8)
        #expect(try epoll.wait(into: &ready, timeout: 0) == 0)
        try FD.writeAll(theirs.rawValue, [1])
        #expect(try epoll.wait(into: &ready, timeout: 1000) == 1)
        #expect(ready[0] == mine.rawValue)
        try epoll.setArmed(mine.rawValue, false)
        #expect(try epoll.wait(into: &ready, timeout: 0) == 0)
        try epoll.setArmed(mine.rawValue, true)
        #expect(try epoll.wait(into: &ready, timeout: 1000) == 1)
        try epoll.remove(mine.rawValue)
        let removed = #expect(throws: SystemError.self) { try epoll.remove(mine.rawValue) }
        #expect(removed?.code == .noSuchFile)
    }

    @Test func signal_namesItself() {
        #expect(Signal.terminate.description == "SIGTERM")
        #expect(Signal.kill.description == "SIGKILL")
        #expect(Signal(rawValue: 64).description == "signal 64")
    }

    /// A thread whose work is done takes the next work (no new thread) and has let go of what
    /// the last work captured. The pool waits long enough that no pause of this test under load
    /// lets its thread end first.
    @Test(.hangGuard) func threadPool_reusesAWaitingThread() {
        final class Token: Sendable {}
        let pool = ThreadPool(idleLimit: 4, idleSeconds: 60)
        let threads = Mutex<[pthread_t]>([])
        let done = DispatchSemaphore(value: 0)
        weak var captured: Token?
        do {
            let token = Token()
            captured = token
            pool.start(name: "test-pool") {
                withExtendedLifetime(token) { threads.withLock { $0.append(pthread_self()) } }
                done.signal()
            }
        }
        done.wait()
        while pool.idleCount == 0 { sched_yield() }
        #expect(captured == nil)
        pool.start(name: "test-pool") {
            threads.withLock { $0.append(pthread_self()) }
            done.signal()
        }
        done.wait()
        #expect(pool.created.load(ordering: .relaxed) == 1)
        let seen = threads.withLock { $0 }
        #expect(seen.count == 2 && seen.first == seen.last)
    }

    /// A waiting thread that gets no work within its time ends; the next work gets a new one.
    @Test(.hangGuard) func threadPool_endsAThreadThatWaitedInVain() {
        let pool = ThreadPool(idleLimit: 4, idleSeconds: 0.01)
        let done = DispatchSemaphore(value: 0)
        pool.start(name: "test-pool") { done.signal() }
        done.wait()
        while pool.idleCount == 0 { sched_yield() }
        while pool.idleCount > 0 { Deadline.pause(0.01) }
        pool.start(name: "test-pool") { done.signal() }
        done.wait()
        #expect(pool.created.load(ordering: .relaxed) == 2)
    }
}
