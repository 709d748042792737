@preconcurrency import Glibc

/// What `stat` says about a file: its kind, permission bits and size.
package struct FileStatus: Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        case regular, directory, symbolicLink, socket, pipe, other
    }

    package var kind: Kind
    /// The permission bits (`st_mode & 0o7777`).
    package var permissions: UInt32
    package var size: Int
    /// The last modification, in nanoseconds since the epoch.
    package var modified: Int64
    /// The last status change (`st_ctim`: any write, chmod, rename or link), in nanoseconds
    /// since the epoch. Unlike `modified`, no user call can set it back.
    package var changed: Int64
    /// The device and inode number: which file this is, whatever its path.
    package var device: UInt64
    package var inode: UInt64
    /// How many names (hard links) the file has.
    package var links: Int

    init(_ info: stat) {
        switch info.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        case S_IFSOCK: kind = .socket
        case S_IFIFO: kind = .pipe
        default: kind = .other
        }
        permissions = UInt32(info.st_mode & 0o7777)
        size = Int(info.st_size)
        modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        changed = Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec)
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        links = Int(info.st_nlink)
    }

    /// The status of `path`; of the link itself when `followingSymlinks` is false.
    /// The corresponding C functions are `stat` and `lstat`.
    /// - Throws: `SystemError` from `stat` or `lstat`.
    package init(path: String, followingSymlinks: Bool = true) throws(SystemError) {
        var info = Glibc.stat()
        if followingSymlinks {
            guard stat(path, &info) == 0 else { throw .current("stat") }
        } else {
            guard lstat(path, &info) == 0 else { throw .current("lstat") }
        }
        self.init(info)
    }

    /// The status of `name` (one component, as bytes) in `directory`, never following a symlink.
    /// The corresponding C function is `fstatat`.
    /// - Throws: `SystemError` from `fstatat`.
    package init(_ name: [UInt8], in directory: Int32) throws(SystemError) {
        var info = Glibc.stat()
        let code = FileIO.call(name) { fstatat(directory, $0, &info, AT_SYMLINK_NOFOLLOW) }.errno
        if code != 0 { throw SystemError("fstatat", errno: code) }
        self.init(info)
    }

    /// The status of the file `fd` refers to. The corresponding C function is `fstat`.
    /// - Throws: `SystemError` from `fstat`.
    package init(descriptor fd: Int32) throws(SystemError) {
        var info = Glibc.stat()
        guard fstat(fd, &info) == 0 else { throw .current("fstat") }
        self.init(info)
    }
}
