import Foundation
import Testing

@testable import DistrCore

/// What `distr-master` does on a real terminal: each case runs it under `script`, which gives it
/// a pseudo-terminal (stdin, stdout and stderr), forwards the keys the test writes, and copies
/// the screen's bytes out. Keys are sent only once the prompt they answer is on the screen.
@Suite(.hangGuard, .enabled(if: FileIO.isExecutable("/usr/bin/script"), "needs script (util-linux); skipped"))
struct TerminalTests {
    init() { Signals.ignorePipe() }

    /// `arguments` run by `distr-master` on a pseudo-terminal; the test types into `keys`.
    final class Screen: Sendable {
        let process: TestProcess
        let keys: Int32

        init(_ arguments: [String], in directory: String) throws {
            let quoted = ([Binaries.master] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            let pipe = try FD.pipe()
            process = try TestProcess(
                ["/usr/bin/script", "-qfec", quoted.joined(separator: " "), "/dev/null"], directory: directory, stdin: pipe.read)
            FD.close(pipe.read)
            keys = pipe.write
        }

        func type(_ text: String) throws { try FD.writeAll(keys, Array(text.utf8)) }

        /// Waits until the screen has shown `needle` `count` times in all.
        func shows(_ needle: String, count: Int = 1) -> Bool { process.stdout.waitFor(count: count, of: needle, timeout: 30) }

        var text: String { process.stdout.text }

        func finish() -> MasterRun {
            let run = TestProcess.run(process)
            FD.close(keys)
            return run
        }
    }

    @Test func shell_editsLines_andRecallsHistory_onATerminal() throws {
        try withTestCluster(workers: 2) { cluster in
            let screen = try Screen(["shell", "--peers", cluster.peersFile, "--secret-file", cluster.secretFile], in: cluster.root.path)
            // A fresh, empty prompt (each key redraws the line, so "distr> " alone shows many
            // times): drawn once the terminal is in raw mode for the next line.
            let prompt = "distr> \u{1B}[K"
            try #require(screen.shows(prompt), "no prompt: \(screen.text)")
            // A typo fixed with Backspace.
            try screen.type("echo hellp\u{7F}o\r")
            try #require(screen.shows("-----\r\nhello\r\n"), "\(screen.text)")
            try #require(screen.shows(prompt, count: 2), "\(screen.text)")
            // Up recalls it; Enter runs it again.
            try screen.type("\u{1B}[A\r")
            try #require(screen.shows("-----\r\nhello\r\n", count: 2), "\(screen.text)")
            try #require(screen.shows(prompt, count: 3), "\(screen.text)")
            // Ctrl-A goes to the start of the line, Left and Right move in it: "cho hi" becomes "echo hi!".
            try screen.type("cho hi\u{01}e\u{1B}[C\u{1B}[D\u{05}!\r")
            try #require(screen.shows("-----\r\nhi!\r\n"), "\(screen.text)")
            try #require(screen.shows(prompt, count: 4), "\(screen.text)")
            // Ctrl-C at the prompt drops the line; Ctrl-D on an empty line leaves.
            try screen.type("echo dropped\u{03}")
            try #require(screen.shows("dropped\u{1B}[K^C\r"), "\(screen.text)")
            try screen.type("\u{04}")
            let run = screen.finish()
            #expect(run.status == 0, "\(run.stdout)")
            #expect(!run.stdout.contains("-----\r\ndropped"), "\(run.stdout)")
            #expect(run.stdout.contains("shell on 2 node(s)"), "the banner shows on a terminal: \(run.stdout)")
        }
    }

    @Test func progressLine_isDrawnWhileOutputIsHeld_andErasedBeforeIt() throws {
        try withTestCluster(workers: 2) { cluster in
            let go = cluster.root.path + "/go"
            let screen = try Screen(
                [
                    "exec", "--gather", "--peers", cluster.peersFile, "--secret-file", cluster.secretFile, "--",
                    "while [ ! -e '\(go)' ]; do sleep 0.05; done; echo finished",
                ], in: cluster.root.path)
            try #require(screen.shows("distr: 2 running, 0 done, 0 failed, "), "\(screen.text)")
            try FileIO.write(go, [], mode: 0o644, exclusive: false)
            let run = screen.finish()
            #expect(run.status == 0, "\(run.stdout)")
            // The gathered output follows the line's erasure, and no line is drawn after it.
            let erase = ProgressLine.erase
            guard let output = run.stdout.range(of: "finished\r\n"), let lastLine = run.stdout.range(of: "running, ", options: .backwards)
            else {
                Issue.record("\(run.stdout)")
                return
            }
            #expect(lastLine.upperBound < output.lowerBound, "\(run.stdout)")
            let between = run.stdout[lastLine.upperBound..<output.lowerBound]
            #expect(between.contains(erase), "the line is erased before the output: \(run.stdout.debugDescription)")
        }
    }
}
