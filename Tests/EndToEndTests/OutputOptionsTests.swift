import Foundation
import Testing

@testable import DistrCore

@Suite struct OutputOptionsTests {
    /// 3 ranks × 2 MB, past the 256 KiB `--spill-after` a rank keeps in memory here, so each
    /// spills to its temporary file: identical outputs fold, and the content is whole. (3 × 100 MB
    /// with the default 8 MiB works too, but takes minutes with the debug build the tests use;
    /// distr-bench measures the scaling.)
    @Test func gather_largeIdenticalOutputSpillsAndFolds() throws {
        let lines = 2_000
        let run = try TestProcess.master([
            "exec", "--local", "3", "--gather", "--spill-after", "262144", "--",
            "head -c 999 /dev/zero | tr '\\0' x > line; echo >> line; i=0; while [ $i -lt \(lines / 1000) ]; do i=$((i+1)); "
                + "for j in 0 1 2 3 4 5 6 7 8 9; do cat line line line line line line line line line line; done; "
                + "for k in 1 2 3 4 5 6 7 8 9; do for j in 0 1 2 3 4 5 6 7 8 9; do cat line line line line line line line line line line; done; done; done",
        ])
        #expect(run.status == 0)
        let bytes = run.stdoutBytes
        let header = Array("----- [0-2] -----\n".utf8)
        #expect(Array(bytes.prefix(header.count)) == header)
        #expect(bytes.count == header.count + lines * 1000)
        #expect(bytes.dropFirst(header.count).allSatisfy { $0 == UInt8(ascii: "x") || $0 == 10 })
        #expect(bytes.dropFirst(header.count).filter { $0 == 10 }.count == lines)
    }

    /// `--gather` prints the first rank's stdout while the job runs once the other rank's differs
    /// from it: the ranks end only after the test has seen it.
    @Test func gather_firstRanksStdout_showsWhileTheJobRuns() throws {
        try withTemporaryDirectory { directory in
            let go = directory.path + "/go"
            let process = try TestProcess([
                Binaries.master, "exec", "--local", "2", "--gather", "--",
                "echo rank $DISTR_NODE_ID; while [ ! -e '\(go)' ]; do sleep 0.05; done; echo done $DISTR_NODE_ID",
            ])
            let shown = process.stdout.waitFor("----- [0] -----\nrank 0\n")
            try FileIO.write(go, [], mode: 0o644, exclusive: false)
            let run = TestProcess.run(process)
            #expect(shown, "\(run.stdout)")
            #expect(run.status == 0)
            #expect(run.stdout == "----- [0] -----\nrank 0\ndone 0\n----- [1] -----\nrank 1\ndone 1\n")
        }
    }

    /// Three ranks write lines of every length from 0 to 299 bytes, in writes of 4093 bytes that
    /// end mid-line, to stdout and stderr at once, ending with a partial line: the worker relays
    /// them in batches, and every line arrives whole, labelled, in order, on its own stream.
    @Test func liveOutput_linesSplitAcrossWritesStayWholeLabelledAndInOrder() throws {
        try withTemporaryDirectory { directory in
            let script = directory.path + "/lines.py"
            try """
            import os, sys
            rank = os.environ["DISTR_NODE_ID"].encode()
            def text(tag):
                return b"".join(b"%s:%s:%d:%s\\n" % (tag, rank, i, b"x" * (i % 300)) for i in range(3000)) + tag + b":end"
            out, err = text(b"out"), text(b"err")
            for i in range(0, max(len(out), len(err)), 4093):
                sys.stdout.buffer.write(out[i:i + 4093]); sys.stdout.flush()
                sys.stderr.buffer.write(err[i:i + 4093]); sys.stderr.flush()
            """.write(toFile: script, atomically: true, encoding: .utf8)
            let run = try TestProcess.master(["run", "-q", "--local", "3", "--", "python3", script])
            #expect(run.status == 0, "\(run.stderr.suffix(2000))")
            for (tag, lines) in [("out", run.stdoutLines), ("err", run.stderr.split(separator: "\n").map(String.init))] {
                for rank in 0..<3 {
                    let got = lines.filter { $0.hasPrefix("[\(rank)] ") }
                    let expected =
                        (0..<3000).map { "[\(rank)] \(tag):\(rank):\($0):" + String(repeating: "x", count: $0 % 300) } + ["[\(rank)] \(tag):end"]
                    #expect(
                        got == expected,
                        "rank \(rank) \(tag): \(got.count) lines, first difference at line \(zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1)"
                    )
                }
                #expect(lines.count == 3 * 3001, "\(tag): \(lines.count) lines")
            }
        }
    }

    @Test func timestamps_prefixEveryLineWithLocalTimeInMilliseconds() throws {
        let run = try TestProcess.master(["exec", "--local", "1", "--timestamps", "--", "echo a; echo b"])
        #expect(run.status == 0)
        let pattern = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} \[0\] [ab]$/#
        #expect(run.stdoutLines.count == 2)
        for line in run.stdoutLines { #expect(line.wholeMatch(of: pattern) != nil, "\(line)") }
    }

    @Test func outputDir_writesEachRanksStreams() throws {
        try withTemporaryDirectory { directory in
            let target = directory.path + "/logs"
            let run = try TestProcess.master([
                "exec", "--local", "2", "--output-dir", target, "--", "echo out$DISTR_NODE_ID; echo err$DISTR_NODE_ID >&2",
            ])
            #expect(run.status == 0)
            for rank in 0..<2 {
                #expect(try String(contentsOfFile: "\(target)/\(rank).out", encoding: .utf8) == "out\(rank)\n")
                #expect(try String(contentsOfFile: "\(target)/\(rank).err", encoding: .utf8) == "err\(rank)\n")
            }
        }
    }

    @Test func outputDir_thatCannotBeMade_isRefusedBeforeTheJob() throws {
        try withTemporaryDirectory { directory in
            let file = directory.path + "/plain"
            #expect(FileManager.default.createFile(atPath: file, contents: Data()))
            let run = try TestProcess.master(["exec", "--local", "1", "--output-dir", file + "/sub", "--", "touch \(directory.path)/ran"])
            #expect(run.status == ExitCode.usage)
            #expect(run.stderr.contains("cannot create the output directory '\(file)/sub'"))
            #expect(!FileManager.default.fileExists(atPath: directory.path + "/ran"))
        }
    }

    @Test func progressLine_isNeverDrawnWhenStderrIsNotATerminal() throws {
        let run = try TestProcess.master(["exec", "--local", "2", "--gather", "--", "sleep 0.5; echo done"])
        #expect(run.status == 0)
        #expect(!run.stderr.contains("running"))
        #expect(!run.stderr.contains("\u{1B}"))
    }

    @Test func startError_isPrintedOncePerDistinctMessage() throws {
        try withTemporaryDirectory { directory in
            // --keep-going: every rank tries to start. Without it the first failure ends the job,
            // and a worker that hears that before its own attempt reports its rank as not started
            // (it raced: 2 of 3 ranks said so in 1 of 100 runs next to two busy loops).
            let run = try TestProcess.master(
                ["run", "--local", "3", "--keep-going", "--no-ship-args", "/nonexistent/prog"], directory: directory.path)
            #expect(run.status != 0)
            let mentions = run.stderr.components(separatedBy: "\n").filter { $0.contains("/nonexistent/prog") }
            #expect(mentions.count == 1, "\(run.stderr)")
            #expect(run.stderr.contains("ranks [0-2]"))
        }
    }
}
