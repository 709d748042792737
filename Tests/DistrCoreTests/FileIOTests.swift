import Foundation
import Testing

@testable import DistrCore

@Suite struct FileIOTests {
    /// Makes `depth` nested directories named "d" under `root` (through descriptors: the path is
    /// longer than PATH_MAX), with a file in the deepest.
    func makeDeepTree(_ root: String, depth: Int) throws {
        try #require(mkdir(root, 0o700) == 0)
        var fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(fd >= 0)
        for _ in 0..<depth {
            try #require(mkdirat(fd, "d", 0o700) == 0)
            let next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            close(fd)
            fd = next
            try #require(fd >= 0)
        }
        let file = openat(fd, "leaf", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        close(file)
        close(fd)
    }

    @Test func removeTree_removesTreeDeeperThanTheDescriptorLimit() throws {
        // In memory where it can be: tens of thousands of nested directories take a minute to
        // create and remove on a busy disk, and seconds on tmpfs.
        let parent = try makeTemporaryDirectory(in: FileIO.exists("/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
        defer { FileIO.removeTree(parent) }
        // One descriptor per level would run out: the walk must hold a bounded number.
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let depth = max(5_000, min(Int(limit.rlim_cur) + 100, 70_000))
        try makeDeepTree(parent + "/tree", depth: depth)
        let report = FileIO.removeTree(parent + "/tree")
        #expect(report.isComplete, "\(report)")
        #expect(try names(in: parent).isEmpty)
    }

    @Test func removeTree_removesModeZeroDirectoriesAndRoot() throws {
        let parent = try makeTemporaryDirectory()
        defer { FileIO.removeTree(parent) }
        let root = parent + "/job"
        try FileIO.makeDirectories(root + "/a/b/c")
        try FileIO.write(root + "/a/b/c/f", [1], mode: 0o600, exclusive: true)
        try FileIO.write(root + "/a/b/g", [1], mode: 0o000, exclusive: true)
        #expect(chmod(root + "/a/b", 0o000) == 0)
        #expect(chmod(root + "/a", 0o500) == 0)
        #expect(chmod(root, 0o000) == 0)
        let report = FileIO.removeTree(root)
        #expect(report.isComplete, "\(report)")
        #expect(!FileIO.exists(root))
    }

    @Test func removeTree_asAnUnprivilegedUserFixesPermissionsAndReportsWhatItCannotRemove() throws {
        let parent = try makeTemporaryDirectory()
        defer { FileIO.removeTree(parent) }
        let root = parent + "/job"
        let unprivileged = getuid() == 0
        if unprivileged { #expect(chown(parent, 65534, 65534) == 0) }
        // Made by the job's user; a rank then locks a subdirectory and the job directory itself.
        try asFileSystemUser(unprivileged ? 65534 : getuid()) {
            try FileIO.makeDirectories(root + "/a/b")
            try FileIO.write(root + "/a/b/f", [1], mode: 0o600, exclusive: true)
            try FileIO.makeDirectories(root + "/stuck")
        }
        // Something the job's user cannot remove: a file in a directory of another owner (as
        // root), or in a directory without write permission that it cannot chmod (otherwise).
        try FileIO.write(root + "/stuck/file", [1], mode: 0o600, exclusive: true)
        if unprivileged {
            #expect(chown(root + "/stuck", 0, 0) == 0)
            #expect(chmod(root + "/stuck", 0o755) == 0)
        }
        let report = try asFileSystemUser(unprivileged ? 65534 : getuid()) {
            #expect(chmod(root + "/a/b", 0o000) == 0)
            #expect(chmod(root, 0o000) == 0)
            return FileIO.removeTree(root)
        }
        #expect(!report.isComplete)
        #expect(report.failureCount == 1)
        #expect(report.failures.first?.path == root + "/stuck/file")
        #expect(report.failures.first?.error.errno == EACCES)
        #expect(report.description.contains(root + "/stuck/file"))
        // Everything else went; the parent (the worker's, writable) can remove the rest.
        #expect(try names(in: root) == ["stuck"])
        #expect(FileIO.removeTree(root).isComplete)
    }

    @Test func removeTree_removesSymlinksNotWhatTheyPointTo() throws {
        let parent = try makeTemporaryDirectory()
        let outside = try makeTemporaryDirectory()
        defer {
            FileIO.removeTree(parent)
            FileIO.removeTree(outside)
        }
        try FileIO.write(outside + "/keep", [1], mode: 0o600, exclusive: true)
        try FileIO.makeDirectories(parent + "/job/sub")
        #expect(symlink(outside, parent + "/job/sub/link") == 0)
        #expect(symlink(outside + "/keep", parent + "/job/file-link") == 0)
        #expect(chmod(outside, 0o500) == 0)
        #expect(FileIO.removeTree(parent + "/job").isComplete)
        #expect(!FileIO.exists(parent + "/job"))
        #expect(try names(in: outside) == ["keep"])
        #expect(FileIO.mode(outside).map { $0 & 0o777 } == 0o500)
        // A symlink as the root itself is removed as a name.
        #expect(symlink(outside, parent + "/root-link") == 0)
        #expect(FileIO.removeTree(parent + "/root-link").isComplete)
        #expect(try names(in: outside) == ["keep"])
        #expect(chmod(outside, 0o700) == 0)
    }

    /// A kept record file is rewritten in place: a shorter text leaves nothing of the longer
    /// one behind, the same inode is used, and a missing file is made with the mode asked for.
    @Test func overwrite_replacesTheContentsInPlaceAndCutsThemToLength() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let path = dir + "/record"
        try FileIO.overwrite(path, Array("a longer first text\n".utf8), mode: 0o600)
        var before = stat()
        #expect(stat(path, &before) == 0)
        #expect(before.st_mode & 0o777 == 0o600)
        try FileIO.overwrite(path, Array("short\n".utf8), mode: 0o600)
        #expect(try FileIO.readAll(path) == Array("short\n".utf8))
        var after = stat()
        #expect(stat(path, &after) == 0)
        #expect(after.st_ino == before.st_ino)
        #expect(after.st_size == 6)
    }

    @Test func removeTree_missingPathIsNothingToDo() {
        #expect(FileIO.removeTree("/nonexistent/distr/tree").isComplete)
        #expect(!FileIO.removeTree("/").isComplete)
    }

    @Test func directory_listsNamesAsTheKernelsBytes() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let notUTF8: [UInt8] = [0x66, 0xFF, 0x2E]
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(fd) }
        let file = FileIO.call(notUTF8) { openat(fd, $0, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) }.result
        #expect(file >= 0)
        close(file)
        try FileIO.makeDirectories(dir + "/sub")
        let entries = try Directory(duplicating: fd).entries().sorted { $0.name.lexicographicallyPrecedes($1.name) }
        #expect(entries.map(\.name) == [notUTF8, Array("sub".utf8)])
        #expect(entries.map(\.isDirectory) == [false, true])
        #expect(FileIO.removeTree(dir).isComplete)
    }
}

/// Runs `body` on a new thread whose file-system user and group are `uid`. For root turning into
/// another user, `setfsuid` also drops that thread's CAP_DAC_OVERRIDE and CAP_FOWNER, so the kernel
/// checks permissions as for an unprivileged user; no other thread is affected.
func asFileSystemUser<T>(_ uid: uid_t, _ body: () throws -> T) throws -> T {
    typealias SetFileSystemID = @convention(c) (UInt32) -> Int32
    let setfsuid = unsafeBitCast(try #require(dlsym(nil, "setfsuid")), to: SetFileSystemID.self)
    let setfsgid = unsafeBitCast(try #require(dlsym(nil, "setfsgid")), to: SetFileSystemID.self)
    var result: Result<T, any Error>?
    let work = {
        _ = setfsgid(uid)
        _ = setfsuid(uid)
        result = Result { try body() }
    }
    let started = withoutActuallyEscaping(work) { work in
        var thread = pthread_t()
        let context = Unmanaged.passRetained(ThreadTask(work)).toOpaque()
        let status = pthread_create(
            &thread, nil,
            { raw in
                guard let raw else { return nil }
                Unmanaged<ThreadTask>.fromOpaque(raw).takeRetainedValue().run()
                return nil
            }, context)
        if status == 0 { pthread_join(thread, nil) }
        return status == 0
    }
    try #require(started)
    return try #require(result).get()
}

/// Work handed to one thread, which ends before the caller goes on (`pthread_join`).
private final class ThreadTask: @unchecked Sendable {
    // @unchecked: only the new thread calls `run`, and the caller waits for it to end.
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
