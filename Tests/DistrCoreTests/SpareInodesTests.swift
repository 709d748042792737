import Foundation
import Testing

@testable import DistrCore

/// Job directories and records kept for the next job instead of made anew.
@Suite struct SpareInodesTests {
    @Test func keepsAnEmptyPrivateDirectory_andHandsItBackUnderTheNewName() throws {
        let work = try makeTemporaryDirectory()
        defer { FileIO.removeTree(work) }
        let spares = try SpareInodes(workDirectory: work)
        try FileIO.makeDirectories(work + "/job-1", mode: 0o700)
        let inode = try FileStatus(path: work + "/job-1").inode
        #expect(spares.keepDirectory(work + "/job-1"))
        #expect(!FileIO.exists(work + "/job-1"))
        #expect(spares.takeDirectory(to: work + "/job-2"))
        let taken = try FileStatus(path: work + "/job-2")
        #expect(taken.inode == inode)
        #expect(taken.kind == .directory && taken.permissions & 0o7777 == 0o700)
        // None left: the caller makes the next one.
        #expect(!spares.takeDirectory(to: work + "/job-3"))
    }

    @Test func refusesDirectoriesAJobChanged_orFilled_orALink() throws {
        let work = try makeTemporaryDirectory()
        defer { FileIO.removeTree(work) }
        let spares = try SpareInodes(workDirectory: work)
        try FileIO.makeDirectories(work + "/opened", mode: 0o700)
        try FileIO.setPermissions(work + "/opened", 0o755)
        try FileIO.makeDirectories(work + "/filled", mode: 0o700)
        try FileIO.write(work + "/filled/left", [1], mode: 0o600, exclusive: true)
        try FileIO.makeDirectories(work + "/target", mode: 0o700)
        #expect(symlink(work + "/target", work + "/link") == 0)
        for name in ["opened", "filled", "link", "missing"] {
            #expect(!spares.keepDirectory(work + "/" + name), "\(name)")
        }
        #expect(FileIO.exists(work + "/opened") && FileIO.exists(work + "/filled/left") && FileIO.exists(work + "/target"))
        #expect(!spares.takeDirectory(to: work + "/job"))
    }

    @Test func neverReplacesWhatIsThere() throws {
        let work = try makeTemporaryDirectory()
        defer { FileIO.removeTree(work) }
        let spares = try SpareInodes(workDirectory: work)
        try FileIO.write(work + "/record", Array("old".utf8), mode: 0o600, exclusive: true)
        #expect(spares.keepFile(work + "/record"))
        try FileIO.makeDirectories(work + "/taken", mode: 0o700)
        // An empty directory at the target stays what it was: the spare is dropped instead.
        try FileIO.makeDirectories(work + "/spare-dir", mode: 0o700)
        #expect(spares.keepDirectory(work + "/spare-dir"))
        #expect(!spares.takeDirectory(to: work + "/taken"))
        #expect(try names(in: work + "/.distr-spare").allSatisfy { $0.hasPrefix("f-") })
        let spare = try #require(spares.takeFile())
        #expect(try FileIO.readAll(spare) == Array("old".utf8))
        #expect(spares.takeFile() == nil)
    }

    /// A record is written into a kept file where it is kept, and that file renamed into place:
    /// the same inode, no part left beside it, and the text whole (a longer old text cut off).
    @Test func aRecordIsWrittenIntoAKeptFile_renamedOnceIntoPlace() throws {
        let work = try makeTemporaryDirectory()
        defer { FileIO.removeTree(work) }
        let spares = try SpareInodes(workDirectory: work)
        let records = try JobRecords(workDirectory: work, spares: spares)
        try FileIO.write(work + "/old", Array(repeating: UInt8(ascii: "x"), count: 4096), mode: 0o600, exclusive: true)
        let inode = try FileStatus(path: work + "/old").inode
        #expect(spares.keepFile(work + "/old"))
        var record = JobRecord(jobID: "job1", directory: work + "/distr-job1-abcdef", workerPID: 7, workerStart: 8)
        record.controlGroup = "/sys/fs/cgroup/distr-job-7-8-0"
        try records.write(record)
        let written = records.directory + "/job1"
        #expect(try FileStatus(path: written).inode == inode)
        #expect(try FileIO.readAll(written) == Array(record.text.utf8))
        #expect(try names(in: records.directory) == ["job1"])
        #expect(try names(in: work + "/.distr-spare").isEmpty)
        // No kept file left: the part's way, with the same result.
        var second = record
        second.jobID = "job2"
        try records.write(second)
        #expect(try FileIO.readAll(records.directory + "/job2") == Array(second.text.utf8))
        #expect(try names(in: records.directory).sorted() == ["job1", "job2"])
    }

    @Test func removesSparesOfAWorkerThatIsGone_andKeepsALiveOnesAtStart() throws {
        let work = try makeTemporaryDirectory()
        defer { FileIO.removeTree(work) }
        // pid 1 with a start time that is not its own: a worker that is gone (its pid reused).
        try FileIO.makeDirectories(work + "/.distr-spare/d-1-99999999999-0", mode: 0o700)
        try FileIO.write(work + "/.distr-spare/f-1-99999999999-1", [], mode: 0o600, exclusive: true)
        let live = "d-\(getpid())-\(ProcessTable.ownStartTime)-0"
        try FileIO.makeDirectories(work + "/.distr-spare/" + live, mode: 0o700)
        _ = try SpareInodes(workDirectory: work)
        #expect(try names(in: work + "/.distr-spare") == [live])
    }
}
