import Foundation
import Testing

@testable import DistrCore

@Suite struct OutputTests {
    func contents(_ spool: OutputSpool) throws -> [UInt8] {
        var all: [UInt8] = []
        try spool.forEachPiece { all += $0 }
        return all
    }

    @Test func spool_keepsSmallOutputInMemory() throws {
        let budget = OutputBudget(limit: 1000)
        let spool = OutputSpool(memoryLimit: 100, budget: budget, directory: NSTemporaryDirectory())
        spool.append(Array("one\n".utf8))
        spool.append(Array("two\n".utf8))
        #expect(!spool.isSpilled)
        #expect(budget.inUse == 8)
        #expect(try contents(spool) == Array("one\ntwo\n".utf8))
        #expect(try spool.digest() == SHA256.hash(Array("one\ntwo\n".utf8)))
    }

    @Test func spool_spillsPastItsLimit_keepsOrder_andReturnsTheBudget() throws {
        let budget = OutputBudget(limit: 1 << 20)
        let spool = OutputSpool(memoryLimit: 1000, budget: budget, directory: NSTemporaryDirectory())
        var expected: [UInt8] = []
        for index in 0..<5000 {
            let line = Array("line \(index)\n".utf8)
            spool.append(line)
            expected += line
        }
        #expect(spool.isSpilled)
        #expect(spool.count == expected.count)
        #expect(try contents(spool) == expected)
        #expect(try spool.digest() == SHA256.hash(expected))
        // More after reading back is still kept in order.
        spool.append(Array("tail\n".utf8))
        #expect(try contents(spool) == expected + Array("tail\n".utf8))
        // Drained: all of it written out in order, the memory back in the budget.
        let out = try makeTemporaryDirectory()
        defer { FileIO.removeTree(out) }
        let fd = try FileDescriptor.open(out + "/drained", .writeOnly, options: [.create]).release()
        try spool.drain(to: fd)
        FD.close(fd)
        #expect(try FileIO.readAll(out + "/drained") == expected + Array("tail\n".utf8))
        #expect(budget.inUse == 0)
        #expect(spool.count == 0)
    }

    /// The start of a spilled output stays in memory (it is never written to the file), and a
    /// digest of a prefix reads back only as far as that prefix.
    @Test func spool_keepsItsStartInMemoryWhenItSpills_andDigestsReadOnlyTheirPrefix() throws {
        let budget = OutputBudget(limit: 1 << 20)
        let spool = OutputSpool(memoryLimit: 1000, budget: budget, directory: NSTemporaryDirectory())
        let line = Array(String(repeating: "z", count: 99).utf8) + [10]
        var expected: [UInt8] = []
        for _ in 0..<5000 {
            spool.append(line)
            expected += line
        }
        #expect(spool.isSpilled)
        #expect(budget.inUse == 1000)
        #expect(spool.spilledBytes == expected.count - 1000)
        #expect(try spool.digest(limit: 1000) == SHA256.hash(Array(expected[0..<1000])))
        #expect(spool.bytesReadBack == 0)
        #expect(try spool.digest(limit: 65536) == SHA256.hash(Array(expected[0..<65536])))
        #expect(spool.bytesReadBack == 65536 - 1000)
        #expect(try contents(spool) == expected)
    }

    @Test func spool_spillsWhenTheJobBudgetIsSpent_evenUnderItsOwnLimit() throws {
        let budget = OutputBudget(limit: 10)
        let first = OutputSpool(memoryLimit: 100, budget: budget, directory: NSTemporaryDirectory())
        let second = OutputSpool(memoryLimit: 100, budget: budget, directory: NSTemporaryDirectory())
        first.append(Array("12345678\n".utf8))
        second.append(Array("abcdefgh\n".utf8))
        #expect(!first.isSpilled)
        #expect(second.isSpilled)
        #expect(try contents(second) == Array("abcdefgh\n".utf8))
    }

    @Test func spool_inADirectoryThatDoesNotExist_saysSoAndWhatToDo() throws {
        let spool = OutputSpool(memoryLimit: 1, budget: OutputBudget(limit: 100), directory: "/nonexistent-distr-dir")
        spool.append(Array("ab\n".utf8))
        let failure = try #require(spool.failure)
        #expect(failure.contains("/nonexistent-distr-dir"))
        #expect(failure.contains("TMPDIR"))
        // What is held can still be read, written and digested (it is empty: the master says the
        // output was cut), without reading past what is there.
        spool.append(Array("more\n".utf8))
        #expect(try contents(spool).isEmpty)
        #expect(try spool.digest(limit: 1 << 16) == SHA256.hash([UInt8]()))
        let sink = try FD.pipe()
        defer { FD.close(sink.read) }
        try spool.write(to: sink.write)
        FD.close(sink.write)
    }

    @Test func spool_temporaryFileHasNoName() throws {
        let directory = try makeTemporaryDirectory()
        defer { FileIO.removeTree(directory) }
        let spool = OutputSpool(memoryLimit: 1, budget: OutputBudget(limit: 100), directory: directory)
        spool.append(Array("spilled\n".utf8))
        #expect(spool.isSpilled)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    @Test func groups_keepFirstSeenOrderAndCollectEqualKeys() {
        let keys = [0: "a", 1: "b", 2: "a", 3: "c", 4: "b"]
        #expect(OutputPrinter.groups([0, 1, 2, 3, 4]) { keys[$0]! } == [[0, 2], [1, 4], [3]])
        #expect(OutputPrinter.groups([]) { $0 }.isEmpty)
    }

    @Test func gather_spilledAndInMemoryOutputsFoldWhenEqual() throws {
        let out = try makeTemporaryDirectory()
        defer { FileIO.removeTree(out) }
        let path = out + "/stdout"
        let fd = try FileDescriptor.open(path, .writeOnly, options: [.create]).release()
        let printer = OutputPrinter(
            mode: .gather, ranks: 0..<3, memoryLimitPerRank: 64, memoryLimitTotal: 1000, temporaryDirectory: out, stdoutFD: fd,
            stderrFD: fd)
        let big = Array(String(repeating: "x", count: 99).utf8) + [10]
        for _ in 0..<10 {
            for rank in 0..<2 { printer.output(rank: rank, stream: 1, bytes: big) }
        }
        printer.output(rank: 2, stream: 1, bytes: Array("other\n".utf8))
        printer.finish(ranks: [0, 1, 2], names: [:])
        FD.close(fd)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text == "----- [0-1] -----\n" + String(repeating: String(repeating: "x", count: 99) + "\n", count: 10) + "----- [2] -----\nother\n")
    }

    /// Outputs alike in size and in their first 64 KiB but not after are told apart; equal ones
    /// fold; the groups keep the ranks' order. Spilled output goes back out whole, also to a
    /// descriptor `sendfile` cannot write (a file opened for appending).
    @Test(arguments: [false, true]) func gather_outputsAlikeAtTheStart_areToldApartByTheRest(appending: Bool) throws {
        let out = try makeTemporaryDirectory()
        defer { FileIO.removeTree(out) }
        let path = out + "/stdout"
        let fd = try FileDescriptor.open(path, .writeOnly, options: appending ? [.create, .append] : [.create]).release()
        let printer = OutputPrinter(
            mode: .gather, ranks: 0..<4, memoryLimitPerRank: 1000, memoryLimitTotal: 100_000, temporaryDirectory: out, stdoutFD: fd,
            stderrFD: fd)
        let line = Array(String(repeating: "y", count: 999).utf8) + [10]
        let common = [UInt8](Array(repeating: line, count: 100).joined())
        let tails = [Array("same\n".utf8), Array("diff\n".utf8), Array("same\n".utf8), Array("shorter\n".utf8)]
        for rank in 0..<4 {
            for piece in stride(from: 0, to: common.count, by: 7000) {
                printer.output(rank: rank, stream: 1, bytes: Array(common[piece..<min(common.count, piece + 7000)]))
            }
            printer.output(rank: rank, stream: 1, bytes: tails[rank])
        }
        printer.finish(ranks: [0, 1, 2, 3], names: [:])
        FD.close(fd)
        let text = try FileIO.readAll(path)
        let body = { (tail: String) in common + Array(tail.utf8) }
        #expect(
            text == Array("----- [0,2] -----\n".utf8) + body("same\n") + Array("----- [1] -----\n".utf8) + body("diff\n")
                + Array("----- [3] -----\n".utf8) + body("shorter\n"))
    }

    /// A printer in gather mode writing to a file; `text()` reads what the file holds so far.
    struct GatherFile {
        let directory: String
        let fd: Int32
        let printer: OutputPrinter
        init(ranks: Int, memoryLimitPerRank: Int = 1000) throws {
            directory = try makeTemporaryDirectory()
            fd = try FileDescriptor.open(directory + "/stdout", .writeOnly, options: [.create]).release()
            printer = OutputPrinter(
                mode: .gather, ranks: 0..<ranks, memoryLimitPerRank: memoryLimitPerRank, memoryLimitTotal: 100_000,
                temporaryDirectory: directory, stdoutFD: fd, stderrFD: fd)
        }
        func text() throws -> String { String(decoding: try FileIO.readAll(directory + "/stdout"), as: UTF8.self) }
        func close() {
            FD.close(fd)
            FileIO.removeTree(directory)
        }
    }

    /// The first rank's stdout is printed as it arrives once every other rank's differs from it
    /// (spilled bytes included); its stderr and the other ranks' are held to the end as before.
    @Test func gather_firstRanksStdout_isPrintedAsItArrives_onceNoOtherCanShareIt() throws {
        // 1,000 bytes in memory, 1,000 spilled.
        let file = try GatherFile(ranks: 3, memoryLimitPerRank: 1000)
        defer { file.close() }
        let long = String(repeating: "0", count: 99) + "\n"
        for _ in 0..<20 { file.printer.output(rank: 0, stream: 1, bytes: Array(long.utf8)) }
        file.printer.output(rank: 0, stream: 2, bytes: Array("zero's error\n".utf8))
        file.printer.output(rank: 1, stream: 1, bytes: Array("one\n".utf8))
        #expect(try file.text() == "", "printed while rank 2 might still share rank 0's output")
        file.printer.output(rank: 2, stream: 1, bytes: Array("two\n".utf8))
        #expect(try file.text() == "----- [0] -----\n" + String(repeating: long, count: 20))
        file.printer.output(rank: 0, stream: 1, bytes: Array("zero, partial".utf8))
        #expect(try file.text() == "----- [0] -----\n" + String(repeating: long, count: 20) + "zero, partial\n")
        file.printer.finish(ranks: [0, 1, 2], names: [:])
        #expect(
            try file.text()
                == "----- [0] -----\n" + String(repeating: long, count: 20) + "zero, partial\n"
                + "----- [1] -----\none\n----- [2] -----\ntwo\n----- [0] -----\nzero's error\n")
    }

    /// Outputs that agree as far as they are compared may be one group: nothing is printed
    /// before the end. One rank is a group of its own from the start.
    @Test func gather_outputsAlikeAtTheStart_areHeldToTheEnd_andOneRankIsPrintedAtOnce() throws {
        let alike = try GatherFile(ranks: 3)
        defer { alike.close() }
        let line = String(repeating: "s", count: 999) + "\n"
        for rank in [0, 2, 1] {
            for _ in 0..<5 { alike.printer.output(rank: rank, stream: 1, bytes: Array(line.utf8)) }
        }
        alike.printer.output(rank: 1, stream: 1, bytes: Array("different at 5000\n".utf8))
        #expect(try alike.text() == "")
        alike.printer.finish(ranks: [0, 1, 2], names: [:])
        let same = String(repeating: line, count: 5)
        #expect(try alike.text() == "----- [0,2] -----\n" + same + "----- [1] -----\n" + same + "different at 5000\n")

        let one = try GatherFile(ranks: 1)
        defer { one.close() }
        one.printer.output(rank: 0, stream: 1, bytes: Array("alone\n".utf8))
        #expect(try one.text() == "----- [0] -----\nalone\n")
        one.printer.finish(ranks: [0], names: [:])
        #expect(try one.text() == "----- [0] -----\nalone\n")
    }

    @Test func identicalOutputs_readsWholeOutputsOnlyWhenTheirStartsAgree() {
        var whole: [Int] = []
        let groups = OutputPrinter.identicalOutputs([5, 1, 2, 3], size: { _ in 1 << 20 }) { rank, limit in
            if limit == .max { whole.append(rank) }
            // 5 and 2 agree at the start and in full; 1 and 3 at the start only.
            let start: [Int: UInt8] = [5: 0, 2: 0, 1: 1, 3: 1]
            let all: [Int: UInt8] = [5: 0, 2: 0, 1: 1, 3: 3]
            return [(limit == .max ? all : start)[rank, default: 9]]
        }
        #expect(groups == [[5, 2], [1], [3]])
        #expect(Set(whole) == [5, 1, 2, 3])
        whole = []
        _ = OutputPrinter.identicalOutputs([0, 1, 2], size: { _ in 1 << 20 }) { rank, _ in [UInt8(rank)] }
        #expect(whole.isEmpty, "outputs that differ at the start were read back whole")
    }

    /// A rank's stdout is a pipe of one output batch: a rank that writes fast fills a batch
    /// before it waits (the rank itself reads the size, F_GETPIPE_SZ).
    @Test func rankStdout_isAPipeOfOneOutputBatch() throws {
        let process = try RankProcess(
            rank: 0, arguments: ["/usr/bin/python3", "-c", "import fcntl; print(fcntl.fcntl(1, 1032))"], environment: [],
            directory: NSTemporaryDirectory(), controlGroupProcs: nil)
        defer { process.closeDescriptors() }
        var output: [UInt8] = []
        process.pumpOutput { stream, frame, count in
            if stream == 1 { output += frame[0..<count] }
        }
        #expect(String(decoding: output, as: UTF8.self) == "\(RankProcess.stdoutPipeSize)\n")
    }

    /// Labelled output is the line-by-line labelling, for sparse and dense line ends (lines
    /// shorter than 8 bytes take the counted path) and with or without a final partial line.
    @Test func prefixLines_matchesLineByLine_forEveryDensityOfLineEnds() {
        var generator = SystemRandomNumberGenerator()
        let prefix = Array("2026-03-07T04:05:06.007 [12] ".utf8)
        for percent in [0, 1, 7, 12, 50, 100] {
            for count in [1, 7, 8, 9, 100, 5000] {
                let bytes: [UInt8] = (0..<count).map { _ in Int.random(in: 0..<100, using: &generator) < percent ? 10 : 65 }
                var expected: [UInt8] = []
                var line: [UInt8] = []
                for byte in bytes {
                    line.append(byte)
                    if byte == 10 {
                        expected += prefix + line
                        line = []
                    }
                }
                if !line.isEmpty { expected += prefix + line + [10] }
                #expect(OutputPrinter.prefixLines(bytes, with: prefix) == expected, "\(count) bytes, \(percent)% line ends")
            }
        }
    }

    @Test func stamp_isLocalISO8601WithMilliseconds() {
        let time = LocalTime(year: 2026, month: 3, day: 7, hour: 4, minute: 5, second: 6, millisecond: 7)
        #expect(OutputPrinter.stamp(time) == "2026-03-07T04:05:06.007 ")
        let now = LocalTime(nanosecondsSinceEpoch: 1_700_000_000_123_456_789)
        #expect(now.millisecond == 123)
        #expect(now.year == 2023)
    }

    @Test func progressText_countsAndTenthsOfSeconds() {
        let counts = ProgressLine.Counts(running: 3, done: 1, failed: 2)
        #expect(ProgressLine.text(counts, elapsed: 12.38) == "distr: 3 running, 1 done, 2 failed, 12.3 s")
        #expect(ProgressLine.text(counts, elapsed: 0) == "distr: 3 running, 1 done, 2 failed, 0.0 s")
        #expect(ProgressLine.erase == "\r\u{1B}[K")
    }

    @Test func outputFiles_areMadeForEveryRank_andWritten() throws {
        let base = try makeTemporaryDirectory()
        defer { FileIO.removeTree(base) }
        let files = try OutputFiles(directory: base + "/a/b", ranks: 0..<2)
        files.write(rank: 1, stream: 2, bytes: Array("oops\n".utf8))
        #expect(files.close().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: base + "/a/b").sorted() == ["0.err", "0.out", "1.err", "1.out"])
        #expect(try String(contentsOfFile: base + "/a/b/1.err", encoding: .utf8) == "oops\n")
    }

    @Test func outputFiles_inAPlaceThatCannotHoldADirectory_sayWhereAndWhatToDo() throws {
        let base = try makeTemporaryDirectory()
        defer { FileIO.removeTree(base) }
        try FileIO.write(base + "/file", [], mode: 0o644, exclusive: true)
        #expect {
            try OutputFiles(directory: base + "/file/sub", ranks: 0..<1)
        } throws: { error in
            let text = "\(error)"
            return text.contains("cannot create the output directory '\(base)/file/sub'") && text.contains("--output-dir")
        }
    }

    @Test func cli_parsesTimestampsAndOutputDir_andRejectsBadValues() throws {
        guard case .run(let o) = try MasterCommand.parse(["exec", "--timestamps", "--output-dir=logs", "true"]) else {
            Issue.record("not a run")
            return
        }
        #expect(o.timestamps)
        #expect(o.outputDirectory == "logs")
        #expect(throws: UsageError("--output-dir needs a directory, not an empty string")) {
            try MasterCommand.parse(["exec", "--output-dir=", "true"])
        }
        #expect(throws: UsageError.self) { try MasterCommand.parse(["exec", "--output-dir"]) }
        #expect(throws: UsageError.self) { try MasterCommand.parse(["exec", "--timestamps=yes", "true"]) }
        guard case .run(let spill) = try MasterCommand.parse(["exec", "--gather", "--spill-after", "4096", "true"]) else {
            Issue.record("not a run")
            return
        }
        #expect(spill.spillAfter == 4096)
        for bad in ["0", "-1", "lots", ""] {
            #expect(throws: UsageError.self) { try MasterCommand.parse(["exec", "--spill-after", bad, "true"]) }
        }
    }
}
