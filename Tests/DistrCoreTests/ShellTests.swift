import Testing

@testable import DistrCore

@Suite struct ShellLineTests {
    let nodes = [(label: "rpi-0", host: "rpi-0"), (label: "rpi-1:7000", host: "rpi-1"), (label: "10.0.0.3", host: "10.0.0.3")]

    @Test func parse_plainLine_runsEverywhere_exitLeaves_blankIsNothing() throws {
        #expect(try ShellLine.parse("  uname -a \n", nodes: nodes) == .run(nodes: nil, command: "uname -a"))
        #expect(try ShellLine.parse("exit", nodes: nodes) == .exit)
        #expect(try ShellLine.parse(" \t", nodes: nodes) == .empty)
    }

    @Test func parse_selectorsByIdRangeNameAndHost() throws {
        #expect(try ShellLine.parse("@0,2-2 df -h", nodes: nodes) == .run(nodes: [0, 2], command: "df -h"))
        #expect(try ShellLine.parse("@rpi-1:7000 uptime", nodes: nodes) == .run(nodes: [1], command: "uptime"))
        #expect(try ShellLine.parse("@rpi-1,0 uptime", nodes: nodes) == .run(nodes: [0, 1], command: "uptime"))
        #expect(try ShellLine.parse("@2,0-1\tls", nodes: nodes) == .run(nodes: [0, 1, 2], command: "ls"))
    }

    @Test(arguments: [
        ("@3 ls", "node 3 in '@3' does not exist: the node ids are 0-2, in peers order"),
        ("@1-5 ls", "node 3 in '@1-5' does not exist"),
        ("@nosuchhost ls", "no node is named 'nosuchhost' (in '@nosuchhost'); the nodes are: 0 rpi-0, 1 rpi-1:7000, 2 10.0.0.3"),
        ("@", "'@' needs node ids or names right after it"),
        ("@ ls", "'@' needs node ids or names right after it"),
        ("@0", "'@0' needs a command after it"),
        ("@2-1 ls", "range '2-1' in '@2-1' runs backwards; write '1-2'"),
        ("@0,,1 ls", "empty item in '@0,,1'"),
        ("@-1 ls", "no node is named '-1'"),
    ])
    func parse_badSelector_saysWhatIsWrong(line: String, message: String) {
        #expect(throws: ShellInputError.self) { try ShellLine.parse(line, nodes: nodes) }
        do {
            _ = try ShellLine.parse(line, nodes: nodes)
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }
}

@Suite struct ShellReportTests {
    @Test func render_foldsIdenticalNodes_andShowsStatusesOfTheOthers() {
        let ok = JobCapture.Rank(output: Array("same\n".utf8), status: .exited(0))
        let failed = JobCapture.Rank(output: Array("oops\n".utf8), status: .exited(1))
        let lost = JobCapture.Rank(output: [], status: nil, workerError: "connection reset")
        let text = ShellReport.render([(3, ok), (0, ok), (1, ok), (2, failed), (5, ok), (4, lost)])
        #expect(
            String(decoding: text, as: UTF8.self)
                == "----- [0-1,3,5] -----\nsame\n----- [2] exit 1 -----\noops\n----- [4] lost: connection reset -----\n")
    }

    @Test func render_sameOutputDifferentStatus_areSeparate() {
        let text = ShellReport.render([
            (0, JobCapture.Rank(output: Array("x\n".utf8), status: .exited(0))),
            (1, JobCapture.Rank(output: Array("x\n".utf8), status: .signaled(15))),
        ])
        #expect(String(decoding: text, as: UTF8.self) == "----- [0] -----\nx\n----- [1] killed by signal 15 (SIGTERM) -----\nx\n")
    }
}

extension ShellReportTests {
    @Test func status_isExecsRule_forOneLine() {
        let ok = JobCapture.Rank(output: [], status: .exited(0))
        let three = JobCapture.Rank(output: [], status: .exited(3))
        let killed = JobCapture.Rank(output: [], status: .signaled(9))
        let lost = JobCapture.Rank(output: [], status: .exited(0), workerError: "connection reset")
        let notStarted = JobCapture.Rank()
        #expect(ShellReport.status([(0, ok), (1, ok)], skipped: false, interrupted: false) == 0)
        #expect(ShellReport.status([(0, three), (1, killed), (2, ok)], skipped: false, interrupted: false) == 137)
        #expect(ShellReport.status([(0, three), (1, lost)], skipped: false, interrupted: false) == 69)
        #expect(ShellReport.status([(0, ok), (1, notStarted)], skipped: false, interrupted: false) == 69)
        #expect(ShellReport.status([(0, ok)], skipped: true, interrupted: false) == 69)
        #expect(ShellReport.status([(0, three)], skipped: true, interrupted: true) == 130)
    }
}

@Suite struct LineEditorTests {
    private func keys(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func typing_andEnter_submitsTheLine_andRemembersIt() {
        var editor = LineEditor()
        #expect(editor.feed(keys("ls")) == [.redraw, .redraw])
        #expect(editor.feed(0x0D) == [.submit("ls")])
        #expect(editor.buffer.isEmpty && editor.cursor == 0)
        #expect(editor.history == ["ls"])
    }

    @Test func leftRightHomeEnd_moveTheCursor_andInsertAtIt() {
        var editor = LineEditor()
        _ = editor.feed(keys("ac"))
        _ = editor.feed(keys("\u{1B}[D"))
        #expect(editor.cursor == 1)
        _ = editor.feed(keys("b"))
        #expect(editor.line == "abc" && editor.cursor == 2)
        #expect(editor.feed(0x01) == [.redraw])
        #expect(editor.cursor == 0)
        #expect(editor.feed(keys("\u{1B}[D")) == [.bell], "left at the start")
        _ = editor.feed(0x05)
        #expect(editor.cursor == 3)
        #expect(editor.feed(keys("\u{1B}[C")) == [.bell], "right at the end")
        _ = editor.feed(keys("\u{1B}[H"))
        #expect(editor.cursor == 0)
        _ = editor.feed(keys("\u{1B}OF"))
        #expect(editor.cursor == 3)
    }

    @Test func backspaceDeleteAndCtrlU_erase() {
        var editor = LineEditor()
        _ = editor.feed(keys("abcd"))
        _ = editor.feed(0x7F)
        #expect(editor.line == "abc")
        _ = editor.feed(0x01)
        #expect(editor.feed(0x7F) == [.bell], "backspace at the start")
        _ = editor.feed(keys("\u{1B}[3~"))
        #expect(editor.line == "bc" && editor.cursor == 0)
        _ = editor.feed(0x05)
        _ = editor.feed(keys("\u{1B}[D"))
        _ = editor.feed(0x15)
        #expect(editor.line == "c" && editor.cursor == 0)
    }

    @Test func upAndDown_walkTheHistory_andComeBackToTheDraft() {
        var editor = LineEditor()
        _ = editor.feed(keys("one\rtwo\rtwo\r"))
        #expect(editor.history == ["one", "two"], "a repeat is kept once")
        _ = editor.feed(keys("dr"))
        _ = editor.feed(keys("\u{1B}[A"))
        #expect(editor.line == "two" && editor.cursor == 3)
        _ = editor.feed(keys("\u{1B}[A"))
        #expect(editor.line == "one")
        #expect(editor.feed(keys("\u{1B}[A")) == [.bell], "no older entry")
        _ = editor.feed(keys("\u{1B}[B\u{1B}[B"))
        #expect(editor.line == "dr")
        #expect(editor.feed(keys("\u{1B}[B")) == [.bell], "no newer entry")
    }

    @Test func ctrlC_dropsTheLine_ctrlD_leavesOnlyWhenEmpty() {
        var editor = LineEditor()
        _ = editor.feed(keys("abc"))
        #expect(editor.feed(0x03) == [.cancel])
        #expect(editor.buffer.isEmpty)
        #expect(editor.history.isEmpty, "a dropped line is not remembered")
        _ = editor.feed(keys("ab"))
        _ = editor.feed(0x01)
        #expect(editor.feed(0x04) == [.redraw])
        #expect(editor.line == "b")
        _ = editor.feed(0x15)
        _ = editor.feed(0x05)
        _ = editor.feed(0x7F)
        #expect(editor.feed(0x04) == [.endOfInput])
    }

    @Test func unknownControlsAndEscapes_ringTheBell_andChangeNothing() {
        var editor = LineEditor()
        _ = editor.feed(keys("x"))
        #expect(editor.feed(0x07) == [.bell])
        #expect(editor.feed(keys("\u{1B}[5~")) == [.bell])
        #expect(editor.feed(keys("\u{1B}x")) == [.bell])
        #expect(editor.line == "x" && editor.cursor == 1)
    }

    @Test func historyLimit_dropsTheOldest() {
        var editor = LineEditor(historyLimit: 2)
        _ = editor.feed(keys("a\rb\rc\r"))
        #expect(editor.history == ["b", "c"])
    }

    @Test func redraw_writesPromptLineAndMovesTheCursorBack() {
        var editor = LineEditor()
        _ = editor.feed(keys("abc\u{1B}[D\u{1B}[D"))
        #expect(String(decoding: editor.redraw(prompt: "> "), as: UTF8.self) == "\r> abc\u{1B}[K\u{1B}[2D")
    }
}
