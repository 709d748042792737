@preconcurrency import Glibc
import CDistrSys

extension FileIO {
    /// Renames `source` to `target` unless `target` exists (a plain `rename` would replace an
    /// empty directory or a file there). The corresponding C function is `renameat2` with
    /// `RENAME_NOREPLACE`.
    /// - Returns: false when it was not moved (`target` exists, `source` is gone, or no
    ///   `renameat2` on this kernel or file system).
    package static func moveUnlessTaken(_ source: String, to target: String) -> Bool {
        cdistr_rename_noreplace(source, target) == 0
    }

    /// True when `path` is an empty directory (not a symlink to one) that this user owns, of mode
    /// 0700, with no extended attributes (so no ACL): one that can be handed to another job as if
    /// it had just been made. The corresponding C functions are `open`, `fstat`, `flistxattr` and
    /// `readdir`.
    package static func isEmptyPrivateDirectory(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { FD.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o7777 == 0o700, cdistr_xattr_names_size(fd) == 0,
            let entries = try? Directory(duplicating: fd).entries()  // Unreadable: not shown to be empty.
        else { return false }
        return entries.isEmpty
    }
}
