/// What a worker writes down about each running job in its state directory
/// (`WORKDIR/.distr-jobs`, mode 0700): enough for a later worker, or the worker's sentinel, to
/// find what a crashed worker left behind.
struct JobRecord: Sendable, Equatable {
    var jobID: String
    var directory: String
    var workerPID: Int32
    var workerStart: UInt64
    /// The ranks' process groups (each rank leads its own).
    var processGroups: [Int32] = []
    /// The job's cgroup directory, if it has one.
    var controlGroup: String?

    var text: String {
        "job \(jobID)\ndirectory \(directory)\nworker \(workerPID) \(workerStart)\ngroups \(processGroups.map(String.init).joined(separator: " "))\n"
            + (controlGroup.map { "cgroup \($0)\n" } ?? "")
    }

    /// Parses `text`; nil when a field is missing or malformed (a record cut short by a crash).
    init?(text: String) {
        var fields: [String: Substring] = [:]
        for line in text.split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { continue }
            fields[String(line[..<space])] = line[line.index(after: space)...]
        }
        let worker = fields["worker"]?.split(separator: " ") ?? []
        guard let jobID = fields["job"], let directory = fields["directory"], worker.count == 2,
            let pid = Int32(worker[0]), let start = UInt64(worker[1])
        else { return nil }
        self.jobID = String(jobID)
        self.directory = String(directory)
        workerPID = pid
        workerStart = start
        processGroups = (fields["groups"] ?? "").split(separator: " ").compactMap { Int32($0) }
        controlGroup = fields["cgroup"].map(String.init)
    }

    init(jobID: String, directory: String, workerPID: Int32, workerStart: UInt64) {
        self.jobID = jobID
        self.directory = directory
        self.workerPID = workerPID
        self.workerStart = workerStart
    }
}

/// The state directory's job records: one file per running job, named by its id.
final class JobRecords: Sendable {
    let directory: String
    /// Where spent records are kept for reuse (nil: they are unlinked).
    private let spares: SpareInodes?

    /// - Throws: `SystemError` when the state directory cannot be made.
    init(workDirectory: String, spares: SpareInodes? = nil) throws(SystemError) {
        directory = Self.directory(in: workDirectory)
        self.spares = spares
        try FileIO.makeDirectories(directory, mode: 0o700)
    }

    private init(existing directory: String) {
        self.directory = directory
        spares = nil
    }

    private static func directory(in workDirectory: String) -> String { workDirectory + "/.distr-jobs" }

    /// The records of a state directory that exists, for a reader that must not make one (a
    /// sentinel whose work directory was removed after its worker stopped, as `--local` does,
    /// would otherwise make it again); nil when there is none, and so no record.
    static func existing(workDirectory: String) -> JobRecords? {
        let directory = directory(in: workDirectory)
        return FileIO.exists(directory) ? JobRecords(existing: directory) : nil
    }

    private func path(_ jobID: String) -> String { directory + "/" + jobID }

    /// Writes (or rewrites) a record, atomically: a reader (another worker's start-up, a
    /// sentinel) sees the old record or the new one, never a part. Job ids are checked to be
    /// plain names before this.
    func write(_ record: JobRecord) throws(SystemError) {
        let text = Array(record.text.utf8)
        // A kept record file is rewritten where it is kept and renamed into place: no new inode
        // (see `SpareInodes`), no truncation to nothing, which would send it to the disk at its
        // close, and one rename, where moving it to the part's name first took two.
        if let spare = spares?.takeFile() {
            do throws(SystemError) {
                try FileIO.overwrite(spare, text, mode: 0o600)
                try FileIO.rename(spare, to: path(record.jobID))
                return
            } catch {
                // The spare area misbehaves (full disk, removed by hand): the part's way below
                // says what fails, if anything does.
                FileIO.unlink(spare)
            }
        }
        let temporary = directory + "/.part-" + record.jobID
        try FileIO.overwrite(temporary, text, mode: 0o600)
        try FileIO.rename(temporary, to: path(record.jobID))
    }

    /// Removes a record, and a rewrite of it that its worker died in the middle of (the part
    /// would otherwise outlive the job).
    func remove(_ jobID: String) {
        if spares?.keepFile(path(jobID)) != true { FileIO.unlink(path(jobID)) }
        FileIO.unlink(directory + "/.part-" + jobID)
    }

    /// Every record, with the file it came from (nil record: unreadable or malformed).
    func all() -> [(file: String, record: JobRecord?)] {
        let entries = (try? Directory(path: directory).entries()) ?? []  // Not listable: nothing to reclaim.
        // Names starting with a dot are records being written (see `write`), and . and ..
        return entries.filter { !$0.string.hasPrefix(".") }.map { entry in
            let file = directory + "/" + entry.string
            let text = (try? FileIO.readAll(file)).map { String(decoding: $0, as: UTF8.self) }  // Unreadable: the caller reports it as malformed.
            return (file, text.flatMap(JobRecord.init(text:)))
        }
    }
}
