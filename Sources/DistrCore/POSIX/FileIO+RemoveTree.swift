@preconcurrency import Glibc

/// What `FileIO.removeTree` could not remove.
package struct RemovalReport: Sendable, Equatable, CustomStringConvertible {
    /// An entry left behind, and the call that failed on it.
    package struct Failure: Sendable, Equatable {
        package var path: String
        package var error: SystemError
    }

    /// How many entries could not be removed. A directory left only because something inside it
    /// was left is not counted again.
    package internal(set) var failureCount = 0
    /// The first failures (at most `keptFailures`), in the order they happened.
    package internal(set) var failures: [Failure] = []
    static let keptFailures = 8

    /// True when the whole tree is gone (or was never there).
    package var isComplete: Bool { failureCount == 0 }

    mutating func record(_ path: String, _ error: SystemError) {
        failureCount += 1
        if failures.count < Self.keptFailures { failures.append(Failure(path: path, error: error)) }
    }

    package var description: String {
        if isComplete { return "removed completely" }
        let listed = failures.map { "'\($0.path)' (\($0.error))" }.joined(separator: ", ")
        let more = failureCount > failures.count ? " and \(failureCount - failures.count) more" : ""
        return "could not remove \(failureCount) entries: \(listed)\(more); remove them by hand (look for immutable files or mounts)"
    }
}

extension FileIO {
    /// Removes a directory tree that a rank may have made hostile, and reports what it could not remove.
    ///
    /// The walk is iterative and holds at most four descriptors whatever the depth or width of the
    /// tree: the root's parent, the directory being emptied, and briefly a child and its listing.
    /// It never follows a symlink (`O_NOFOLLOW`, `unlinkat`). A directory a rank made unreadable
    /// (`chmod 000`, the job directory included) gets its owner's permissions back before it is
    /// opened: `fchmodat` on the name in its parent, since an unprivileged `open` of a mode 000
    /// directory fails. The walk climbs back with `..` and checks that it reached the device and
    /// inode it came from, re-walking from the root otherwise, so a directory moved meanwhile
    /// cannot lead it outside the tree. A path that does not exist counts as removed.
    /// The corresponding C functions are `openat`, `fchmodat`, `readdir` and `unlinkat`.
    /// - Returns: the entries left behind; callers log `report.description` unless `isComplete`.
    @discardableResult
    package static func removeTree(_ path: String) -> RemovalReport {
        var report = RemovalReport()
        var bytes = Array(path.utf8)
        while bytes.count > 1 && bytes.last == 0x2F { bytes.removeLast() }
        let slash = bytes.lastIndex(of: 0x2F)
        let parentPath: [UInt8] = slash.map { $0 == 0 ? [0x2F] : Array(bytes[..<$0]) } ?? [0x2E]
        let name = slash.map { Array(bytes[($0 + 1)...]) } ?? bytes
        guard !name.isEmpty, name != [0x2E], name != [0x2E, 0x2E] else {
            report.record(path, SystemError("removeTree", errno: EINVAL))
            return report
        }
        // The parent is the caller's own directory (the worker's work root): following symlinks there is fine.
        let (parent, code) = call(parentPath) { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard parent >= 0 else {
            if code != ENOENT { report.record(path, SystemError("open", errno: code)) }
            return report
        }
        defer { FD.close(parent) }
        var walk = TreeWalk(rootPath: path, rootParent: parent)
        walk.run(rootName: name)
        return walk.report
    }
}

/// The state of one `removeTree` walk: the chain of directories from the root to the one being
/// emptied, each with the entries still to remove, and the one open descriptor on the deepest.
private struct TreeWalk {
    struct Level {
        var name: [UInt8]
        var device: UInt64
        var inode: UInt64
        var pending: [Directory.Entry]
        /// Something inside could not be removed, so neither can this directory.
        var keptSomething = false
    }

    let rootPath: String
    let rootParent: Int32
    var levels: [Level] = []
    var current: Int32 = -1
    var report = RemovalReport()

    init(rootPath: String, rootParent: Int32) {
        self.rootPath = rootPath
        self.rootParent = rootParent
    }

    mutating func run(rootName: [UInt8]) {
        defer { FD.close(current) }
        guard enter(rootName, in: rootParent) else { return }
        while !levels.isEmpty {
            if let entry = levels[levels.count - 1].pending.popLast() {
                remove(entry)
                continue
            }
            let done = levels.removeLast()
            if levels.isEmpty {
                FD.close(current)
                current = -1
                removeDirectory(done, in: rootParent)
                return
            }
            guard climb() else { return }
            removeDirectory(done, in: current)
        }
    }

    /// Removes a file, or opens a directory and makes it the current level.
    private mutating func remove(_ entry: Directory.Entry) {
        if !entry.isDirectory {
            let code = FileIO.call(entry.name) { unlinkat(current, $0, 0) }.errno
            if code == 0 || code == ENOENT { return }
            // DT_UNKNOWN, or a directory that replaced the file since the listing.
            if code != EISDIR {
                fail(entry.name, SystemError("unlinkat", errno: code))
                return
            }
        }
        _ = enter(entry.name, in: current)
    }

    /// Opens directory `name` in `parent` with its permissions fixed, lists it, and descends into it.
    /// Returns false (having recorded why, or removed a non-directory found there) when it cannot.
    private mutating func enter(_ name: [UInt8], in parent: Int32) -> Bool {
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        var (fd, code) = FileIO.call(name) { openat(parent, $0, flags) }
        if code == EACCES {
            // A mode 000 directory: only its owner's chmod of the name lets the open succeed.
            // AT_SYMLINK_NOFOLLOW: if a symlink took the directory's place, change nothing. If the
            // chmod fails, the second open reports why.
            _ = FileIO.call(name) { fchmodat(parent, $0, 0o700, AT_SYMLINK_NOFOLLOW) }
            (fd, code) = FileIO.call(name) { openat(parent, $0, flags) }
        }
        guard fd >= 0 else {
            switch code {
            case ENOENT: break
            case ENOTDIR, ELOOP:
                // A file or symlink: unlink the name itself, never what it points to.
                let unlinkCode = FileIO.call(name) { unlinkat(parent, $0, 0) }.errno
                if unlinkCode != 0 && unlinkCode != ENOENT { fail(name, SystemError("unlinkat", errno: unlinkCode)) }
            default: fail(name, SystemError("openat", errno: code))
            }
            return false
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            fail(name, .current("fstat"))
            FD.close(fd)
            return false
        }
        // Write and search permission are needed to remove the entries and to climb back with `..`.
        if info.st_mode & 0o700 != 0o700 && fchmod(fd, 0o700) != 0 {
            fail(name, .current("fchmod"))
            FD.close(fd)
            return false
        }
        let entries: [Directory.Entry]
        do {
            entries = try Directory(duplicating: fd).entries()
        } catch {
            fail(name, error)
            FD.close(fd)
            return false
        }
        FD.close(current)
        current = fd
        levels.append(Level(name: name, device: UInt64(info.st_dev), inode: UInt64(info.st_ino), pending: entries))
        return true
    }

    /// Removes an emptied directory from `parent`, or marks the parent as keeping something.
    private mutating func removeDirectory(_ level: Level, in parent: Int32) {
        if !level.keptSomething {
            let code = FileIO.call(level.name) { unlinkat(parent, $0, AT_REMOVEDIR) }.errno
            if code == 0 || code == ENOENT { return }
            report.record(path(of: level.name), SystemError("unlinkat", errno: code))
        }
        if !levels.isEmpty { levels[levels.count - 1].keptSomething = true }
    }

    /// Makes the last level's directory current again, through `..` when it leads back to the same
    /// directory, else by re-walking the names from the root. Returns false when neither works.
    private mutating func climb() -> Bool {
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        var up = openat(current, "..", flags)
        if up >= 0 && !isLast(up) {
            FD.close(up)
            up = -1
        }
        if up < 0 {
            up = rewalk()
        }
        FD.close(current)
        current = up
        if up < 0 {
            report.record(rootPath, SystemError("removeTree (a directory moved during removal)", errno: ESTALE))
            return false
        }
        return true
    }

    /// Opens the chain of levels from the root's parent, checking each directory's identity.
    private func rewalk() -> Int32 {
        var fd = rootParent
        for level in levels {
            let next = FileIO.call(level.name) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }.result
            if fd != rootParent { FD.close(fd) }
            guard next >= 0 else { return -1 }
            fd = next
            var info = stat()
            guard fstat(fd, &info) == 0, UInt64(info.st_dev) == level.device, UInt64(info.st_ino) == level.inode else {
                FD.close(fd)
                return -1
            }
        }
        return fd == rootParent ? -1 : fd
    }

    private func isLast(_ fd: Int32) -> Bool {
        var info = stat()
        guard let last = levels.last, fstat(fd, &info) == 0 else { return false }
        return UInt64(info.st_dev) == last.device && UInt64(info.st_ino) == last.inode
    }

    private mutating func fail(_ name: [UInt8], _ error: SystemError) {
        report.record(path(of: name), error)
        if !levels.isEmpty { levels[levels.count - 1].keptSomething = true }
    }

    /// The full path of `name` in the current level, for messages.
    private func path(of name: [UInt8]) -> String {
        let inner = levels.dropFirst().map { $0.name } + (levels.isEmpty ? [] : [name])
        return ([rootPath] + inner.map { String(decoding: $0, as: UTF8.self) }).joined(separator: "/")
    }
}
