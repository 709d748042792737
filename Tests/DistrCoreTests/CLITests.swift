import Foundation
import Testing

@testable import DistrCore

@Suite struct CLITests {
    func options(_ arguments: [String]) throws -> MasterOptions {
        guard case .run(let options) = try MasterCommand.parse(arguments) else { throw UsageError("not a run") }
        return options
    }

    @Test func run_parsesOptionsBothWaysAndStopsAtProgram() throws {
        let o = try options([
            "run", "--local", "3", "--file=a.csv", "--file", "lib/", "--env", "A=1", "--timeout=2.5", "--keep-going", "--group",
            "./prog", "--file", "x",
        ])
        #expect(o.peers == .local(3))
        #expect(o.files == ["a.csv", "lib/"])
        #expect(o.environment == ["A=1"])
        #expect(o.timeout == 2.5)
        #expect(o.keepGoing)
        #expect(o.output == .group)
        #expect(o.mode == .run(program: "./prog", arguments: ["--file", "x"]))
    }

    @Test func noShipArgs_turnsArgumentShippingOff_andIsOnByDefault() throws {
        #expect(try options(["run", "python3", "prog.py"]).shipArguments)
        #expect(try !options(["run", "--no-ship-args", "python3", "prog.py"]).shipArguments)
        // After the program it is the program's argument.
        #expect(try options(["run", "prog", "--no-ship-args"]).shipArguments)
    }

    @Test func stdinAndSkipUnreachable_parse() throws {
        #expect(try options(["run", "p"]).stdin == .none)
        #expect(try !options(["run", "p"]).skipUnreachable)
        let first = try options(["run", "--stdin", "--skip-unreachable", "./p", "all"])
        #expect(first.stdin == .firstRank)
        #expect(first.skipUnreachable)
        #expect(first.mode == .run(program: "./p", arguments: ["all"]))
        #expect(try options(["run", "--stdin", "all", "p"]).stdin == .allRanks)
        #expect(try options(["run", "--stdin=all", "p"]).stdin == .allRanks)
        #expect(try options(["exec", "--stdin", "--", "all"]).mode == .exec(command: ["all"]))
        #expect(throws: UsageError.self) { try MasterCommand.parse(["run", "--stdin=1", "p"]) }
        #expect(throws: UsageError.self) { try MasterCommand.parse(["run", "--skip-unreachable=yes", "p"]) }
    }

    @Test func doubleDash_endsMasterOptions() throws {
        let o = try options(["exec", "--hosts", "a,b", "--", "-la", "x"])
        #expect(o.mode == .exec(command: ["-la", "x"]))
        #expect(o.peers == .hosts("a,b"))
    }

    @Test(arguments: [
        [String](), ["frobnicate"], ["run"], ["exec", "--"], ["run", "--local"], ["run", "--local", "0", "x"],
        ["run", "--local", "x", "p"], ["run", "--bogus", "p"], ["run", "--env", "=1", "p"], ["run", "--env=", "p"],
        ["run", "--local", "2", "--hosts", "a", "p"], ["run", "--timeout", "-1", "p"], ["keygen", "extra"],
    ])
    func badArguments_areUsageErrors(arguments: [String]) {
        #expect(throws: UsageError.self) { try MasterCommand.parse(arguments) }
    }

    @Test func envWithoutAValue_passesThisProcesssValueOn_asMpirunX_andAnUnsetNameIsAUsageError() throws {
        let here = ["OMP_NUM_THREADS": "2", "EMPTY": ""]
        let command = try MasterCommand.parse(
            ["run", "--local", "2", "--env", "OMP_NUM_THREADS", "--env=EMPTY", "--env", "A=1", "p"], environment: { here[$0] })
        guard case .run(let options) = command else { throw UsageError("not a run") }
        #expect(options.environment == ["OMP_NUM_THREADS=2", "EMPTY=", "A=1"])
        #expect(throws: UsageError("--env NOTSET: NOTSET is not set here; give its value with --env NOTSET=VALUE")) {
            try MasterCommand.parse(["exec", "--local", "1", "--env", "NOTSET", "true"], environment: { here[$0] })
        }
    }

    @Test func scanner_handlesInlineValuesAndTerminator() throws {
        var scanner = ArgumentScanner(["--a=1", "--b", "2", "--", "--c"])
        #expect(scanner.next() == .option("--a", inline: "1"))
        #expect(scanner.next() == .option("--b", inline: nil))
        #expect(try scanner.value(of: "--b", inline: nil) == "2")
        #expect(scanner.next() == .positional("--c"))
        #expect(scanner.next() == nil)
    }

    @Test func fold_compressesRankRanges() {
        #expect(OutputPrinter.fold([0, 1, 2, 3, 5]) == "[0-3,5]")
        #expect(OutputPrinter.fold([7]) == "[7]")
        #expect(OutputPrinter.fold([4, 2, 3, 9, 10]) == "[2-4,9-10]")
    }

    @Test func label_prefixesEveryLineAndEndsPartialLine() {
        let out = OutputPrinter.label(Array("a\nb\nc".utf8) + [0xff], rank: 3)
        #expect(out == Array("[3] a\n[3] b\n[3] c".utf8) + [0xff, 10])
    }

    /// Batches are whole lines; a partial line waits for its end (or the exit, with `all`); a
    /// line longer than the buffer is cut when it fills it.
    @Test func lineBuffer_holdsPartialLinesAndCutsOnlyWhatFillsIt() {
        var buffer = LineBuffer(capacity: 8)
        func taken(all: Bool = false) -> String? {
            var out: String?
            buffer.take(all: all) { raw, n in out = String(decoding: UnsafeRawBufferPointer(rebasing: raw[0..<n]), as: UTF8.self) }
            return out
        }
        buffer.append("ab".utf8)
        #expect(taken() == nil)
        buffer.append("c\nd".utf8)
        #expect(taken() == "abc\n")
        #expect(buffer.append("efghijkl".utf8) == 7)
        #expect(buffer.isFull)
        #expect(taken() == "defghijk")
        buffer.append("l\nmn\no".utf8)
        #expect(taken() == "l\nmn\n")
        #expect(taken() == nil)
        #expect(taken(all: true) == "o")
        #expect(taken(all: true) == nil)

        // A line that reaches maxLine is cut there, in a buffer that still has room.
        var long = LineBuffer(capacity: 64, maxLine: 6)
        long.append("ab\ncdefgh".utf8)
        #expect(long.mustTake)
        var batch = ""
        long.take { raw, n in batch = String(decoding: UnsafeRawBufferPointer(rebasing: raw[0..<n]), as: UTF8.self) }
        #expect(batch == "ab\ncdefgh")
        #expect(!long.mustTake)
    }

    /// The batch is handed over with its headroom and tailroom (where a frame's header and MAC
    /// go); what `send` writes there does not reach the bytes still held.
    @Test func lineBuffer_restoresTheNextLineAfterTheTailroomIsWritten() {
        var buffer = LineBuffer(capacity: 16, headroom: 3, tailroom: 4)
        buffer.append("one\ntwo\nthr".utf8)
        var batch: [UInt8] = []
        buffer.take { raw, n in
            #expect(raw.count == 3 + n + 4)
            batch = Array(raw[3..<3 + n])
            for index in raw.indices { raw[index] = 0xEE }
        }
        #expect(batch == Array("one\ntwo\n".utf8))
        buffer.append("ee\n".utf8)
        buffer.take { raw, n in batch = Array(raw[3..<3 + n]) }
        #expect(batch == Array("three\n".utf8))
    }

    @Test func secret_refusesMissingLooseAndMalformedFiles() throws {
        let dir = "/tmp/distr-secret-test-\(getpid())"
        try FileIO.makeDirectories(dir)
        defer { FileIO.removeTree(dir) }
        #expect(throws: SecretError.missing(dir + "/none")) { try ClusterSecret.load(path: dir + "/none") }
        try ClusterSecret.generate(path: dir + "/ok")
        #expect(try ClusterSecret.load(path: dir + "/ok").count == 32)
        #expect(throws: SecretError.exists(dir + "/ok")) { try ClusterSecret.generate(path: dir + "/ok") }
        try FileIO.write(dir + "/loose", Array(randomBytes(32).hex.utf8), mode: 0o644, exclusive: true)
        #expect(throws: SecretError.tooOpen(dir + "/loose", mode: 0o644)) { try ClusterSecret.load(path: dir + "/loose") }
        try FileIO.write(dir + "/short", Array("abcd".utf8), mode: 0o600, exclusive: true)
        #expect(throws: SecretError.malformed(dir + "/short")) { try ClusterSecret.load(path: dir + "/short") }
    }
}

@Suite struct FlagValueTests {
    @Test(arguments: ["--keep-going=no", "--group=1", "--gather=yes", "--keep=false", "--quiet=0", "--no-ship-args=1"])
    func flagGivenAValue_isAUsageError(flag: String) {
        #expect(throws: UsageError.self) { _ = try MasterCommand.parse(["run", flag, "prog"]) }
    }
}
