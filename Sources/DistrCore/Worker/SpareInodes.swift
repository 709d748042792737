import Synchronization

/// Emptied job directories and spent job record files, kept in `WORKDIR/.distr-spare` (mode
/// 0700) and renamed into place for the next job instead of made anew.
///
/// Why: making a file or directory allocates an inode, and on ext4 without a journal (common on
/// VM images) the allocator steps over every inode freed in the last few seconds, reading its
/// table block: with a job every few milliseconds, the job directory and the job record cost a
/// worker more CPU than everything else it does for `exec true` (docs/performance.md). A rename
/// allocates nothing.
///
/// Only what is safe to hand to another job is kept: a directory that is empty, a real
/// directory (not a symlink), owned by this user, of mode 0700, with no extended attributes (no
/// ACL a job could have added); anything else is removed as before. The pool is bounded, and the
/// names carry the worker's pid and start time: a worker starting on the same work directory
/// removes what a worker that is gone left there.
final class SpareInodes: Sendable {
    let directory: String
    private let owner: String
    private let state = Mutex<(directories: [String], files: [String], next: Int)>(([], [], 0))
    /// Spares of each kind kept at most: enough for the jobs one worker runs at once.
    static let limit = 8

    /// Makes (or reuses) the spare area and removes spares of workers that are gone.
    /// - Throws: `SystemError` when the area cannot be made.
    init(workDirectory: String) throws(SystemError) {
        directory = workDirectory + "/.distr-spare"
        owner = "\(CurrentProcess.id)-\(ProcessTable.ownStartTime)"
        try FileIO.makeDirectories(directory, mode: 0o700)
        let entries = (try? Directory(path: directory).entries()) ?? []  // Not listable: nothing to remove.
        for entry in entries {
            let parts = entry.string.split(separator: "-")
            guard parts.count == 4, let pid = Int32(parts[1]), let start = UInt64(parts[2]) else { continue }
            if let live = ProcessTable.info(pid), live.startTime == start, !live.isZombie { continue }
            FileIO.removeTree(directory + "/" + entry.string)
        }
    }

    /// Moves a kept directory to `path`, which must not exist. False when none is kept (or the
    /// move failed; the spare is then removed): the caller makes the directory.
    func takeDirectory(to path: String) -> Bool {
        guard let spare = state.withLock({ $0.directories.popLast() }) else { return false }
        if FileIO.moveUnlessTaken(spare, to: path) { return true }
        FileIO.removeTree(spare)
        return false
    }

    /// Keeps the directory at `path` when it is empty and safe to hand to another job.
    /// - Returns: false when it was not kept (the caller removes it).
    func keepDirectory(_ path: String) -> Bool { FileIO.isEmptyPrivateDirectory(path) && keep(path, directory: true) }

    /// A kept file, left where it is kept and the caller's from now on (to write, then rename
    /// into place, or unlink); nil when none is kept.
    func takeFile() -> String? { state.withLock { $0.files.popLast() } }

    /// Keeps the file at `path` (a record this worker wrote). False when not kept.
    func keepFile(_ path: String) -> Bool { keep(path, directory: false) }

    private func keep(_ path: String, directory: Bool) -> Bool {
        let number = state.withLock { state -> Int? in
            guard (directory ? state.directories.count : state.files.count) < Self.limit else { return nil }
            defer { state.next += 1 }
            return state.next
        }
        guard let number else { return false }
        let spare = self.directory + "/\(directory ? "d" : "f")-\(owner)-\(number)"
        guard FileIO.moveUnlessTaken(path, to: spare) else { return false }
        state.withLock { state in
            if directory { state.directories.append(spare) } else { state.files.append(spare) }
        }
        return true
    }

    /// Removes every spare of this worker (at shutdown).
    func removeAll() {
        let (directories, files) = state.withLock { state in
            defer {
                state.directories = []
                state.files = []
            }
            return (state.directories, state.files)
        }
        for spare in directories + files { FileIO.removeTree(spare) }
    }
}
