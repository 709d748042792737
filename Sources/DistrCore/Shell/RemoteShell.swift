import Dispatch
import Synchronization

/// `distr-master shell`: reads command lines and runs each on every node (or the nodes its `@`
/// selector names) as one `exec` job, then prints the results gathered (`ShellReport`).
///
/// Every line is a new job with new connections: nothing is held open between lines, so a worker
/// restarted between two lines is simply used again. Before each line every node is probed (a
/// handshake, in parallel, bounded by the connect timeout); a node that does not answer is
/// reported once and skipped until it answers again.
package final class RemoteShell: Sendable {
    /// The nodes, in peers order, peers naming the same worker once.
    let nodes: [Peer]
    let options: MasterOptions
    let secret: [UInt8]
    let inputFD: Int32
    let outputFD: Int32
    let errorFD: Int32
    /// The command running now, for Ctrl-C.
    private let running = Mutex<Launcher?>(nil)
    /// Raw-mode settings to give back (on exit and on SIGTERM) while the prompt is shown.
    private let rawSettings = Mutex<Terminal.Settings?>(nil)
    /// Why each node was last found unreachable; nil: reachable (or never probed).
    private let unreachable = Mutex<[Int: String]>([:])

    package static let prompt = "distr> "

    package init(options: MasterOptions, peers: [Peer], secret: [UInt8], inputFD: Int32 = 0, outputFD: Int32 = 1, errorFD: Int32 = 2) {
        var seen = Set<String>()
        nodes = peers.filter { seen.insert($0.description).inserted }
        self.options = options
        self.secret = secret
        self.inputFD = inputFD
        self.outputFD = outputFD
        self.errorFD = errorFD
    }

    private func write(_ fd: Int32, _ bytes: [UInt8]) {
        try? FD.writeAll(fd, bytes)  // The terminal or pipe reader has gone: nothing useful is left to do with the text.
    }

    private func note(_ text: String) { write(errorFD, Array("distr: \(text)\n".utf8)) }

    /// Reads and runs lines until end of input or `exit`.
    /// - Returns: the status of the last line, as a POSIX shell does: the last command's (see
    ///   `ShellReport.status`), 64 when the last line was not understood, 0 when nothing ran.
    package func run() -> Int32 {
        let editing = Terminal.isTerminal(inputFD) && Terminal.isTerminal(outputFD)
        if editing {
            let list = nodes.enumerated().map { "\($0.offset) \($0.element.label)" }.joined(separator: ", ")
            note("shell on \(nodes.count) node(s): \(list)")
            note("a line runs on every node; '@0,2-3 CMD' or '@HOST CMD' on some; Ctrl-C ends a command; Ctrl-D or 'exit' leaves")
        }
        var editor = LineEditor()
        var reader = LineReader(fd: inputFD)
        let labels = nodes.map { (label: $0.label, host: $0.host) }
        var last = ExitCode.ok
        while true {
            let text: String?
            if editing { text = readEdited(&editor, reader: &reader) } else { text = reader.nextLine() }
            guard let text else { break }
            let line: ShellLine
            do { line = try ShellLine.parse(text, nodes: labels) } catch {
                note("\(error)")
                last = ExitCode.usage
                continue
            }
            switch line {
            case .empty: continue
            case .exit: return last
            case .run(let selected, let command): last = execute(command, on: selected ?? Array(nodes.indices))
            }
        }
        if editing { write(outputFD, Array("\n".utf8)) }
        return last
    }

    /// One line from the terminal, edited in raw mode; nil at Ctrl-D on an empty line or end of input.
    private func readEdited(_ editor: inout LineEditor, reader: inout LineReader) -> String? {
        do {
            let settings = try Terminal.enterRawMode(inputFD)
            rawSettings.withLock { $0 = settings }
        } catch {
            note("cannot put the terminal in raw mode (\(error)); reading lines without editing")
            return reader.nextLine()
        }
        defer { leaveRawMode() }
        write(outputFD, editor.redraw(prompt: Self.prompt))
        while let byte = reader.nextByte() {
            for action in editor.feed(byte) {
                switch action {
                case .redraw: write(outputFD, editor.redraw(prompt: Self.prompt))
                case .submit(let line):
                    write(outputFD, Array("\r\n".utf8))
                    return line
                case .cancel:
                    write(outputFD, Array("^C\r\n".utf8))
                    write(outputFD, editor.redraw(prompt: Self.prompt))
                case .endOfInput: return nil
                case .bell: write(outputFD, [0x07])
                }
            }
        }
        return nil
    }

    private func leaveRawMode() {
        if let settings = rawSettings.withLock({ current in
            defer { current = nil }; return current
        }) {
            Terminal.restore(inputFD, settings)
        }
    }

    /// Runs `command` on the reachable ones of `selected`, prints the results and returns their status.
    private func execute(_ command: String, on selected: [Int]) -> Int32 {
        probe()
        let down = unreachable.withLock { $0 }
        let targets = selected.filter { down[$0] == nil }
        let skipped = selected.filter { down[$0] != nil }
        guard !targets.isEmpty else {
            note("no reachable node among \(OutputPrinter.fold(selected)); nothing was run")
            return ExitCode.unavailable
        }
        var jobOptions = options
        jobOptions.mode = .exec(command: [command])
        let capture = JobCapture()
        let launcher = Launcher(options: jobOptions, peers: targets.map { nodes[$0] }, secret: secret, stderrFD: errorFD, capture: capture)
        // A Ctrl-C that came while no command ran (this line was being read) was meant for none:
        // it must not end this one, however late the signal thread takes it.
        _ = Signals.settle(.interrupt)
        running.withLock { $0 = launcher }
        let status = launcher.run()
        running.withLock { $0 = nil }
        let ranks = capture.ranks
        // A node with no record at all (its worker refused before any rank) shows as not started.
        let results = targets.enumerated().map { index, node in (node: node, rank: ranks[index] ?? JobCapture.Rank()) }
        write(outputFD, ShellReport.render(results))
        if !skipped.isEmpty { note("skipped unreachable \(OutputPrinter.fold(skipped))") }
        let interrupted = status == ExitCode.interrupted
        if interrupted { note("interrupted: the command was ended on \(OutputPrinter.fold(targets))") }
        return ShellReport.status(results, skipped: !skipped.isEmpty, interrupted: interrupted)
    }

    /// Probes every node at once and reports those that stopped or started answering.
    private func probe() {
        let results = Mutex<[Int: String]>([:])
        let group = DispatchGroup()
        for (index, peer) in nodes.enumerated() {
            group.enter()
            Threads.start(name: "distr-probe") { [self] in
                defer { group.leave() }
                if let why = Self.probe(peer, secret: secret, timeout: options.connectTimeout) { results.withLock { $0[index] = why } }
            }
        }
        group.wait()
        let now = results.withLock { $0 }
        let before = unreachable.withLock { table in
            defer { table = now }; return table
        }
        for index in nodes.indices {
            let peer = nodes[index]
            if let why = now[index], before[index] == nil {
                note("node \(index) (\(peer.label)) unreachable: \(why); skipped until it answers")
            } else if now[index] == nil, before[index] != nil {
                note("node \(index) (\(peer.label)) is back")
            }
        }
    }

    /// A handshake with `peer`, then the connection closed. Returns why it failed, or nil.
    private static func probe(_ peer: Peer, secret: [UInt8], timeout: Double) -> String? {
        let deadline = Deadline.after(timeout)
        do {
            let fd = try TCPSocket.connect(host: peer.host, port: peer.port, timeout: max(0.001, deadline.remaining))
            let connection = try Connection.client(fd: fd, peer: peer.label, key: secret, kind: .control, timeout: max(0.001, deadline.remaining))
            connection.close()
            return nil
        } catch WireError.busy {
            return nil  // It answered: too many handshakes there at once, which the job's connect retries.
        } catch {
            return "\(error)"
        }
    }

    /// Ctrl-C ends the running command on every node; with none running it does nothing. SIGTERM
    /// gives the terminal back and leaves (the workers end a command whose master has gone).
    package func handle(_ signal: Signal) {
        if signal == .interrupt {
            // A second Ctrl-C while the command ends changes nothing: the shell waits for it.
            _ = running.withLock { $0 }?.interrupt()
            return
        }
        leaveRawMode()
        CurrentProcess.exit(ExitCode.interrupted)
    }
}

/// Lines and bytes from a descriptor, buffered, read as they arrive (never waiting for more than
/// one line).
struct LineReader {
    let fd: Int32
    private var pending: [UInt8] = []
    private var start = 0
    private var ended = false

    init(fd: Int32) { self.fd = fd }

    private mutating func fill() -> Bool {
        if ended { return false }
        if start > 0 {
            pending.removeFirst(start)
            start = 0
        }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n: Int
        do { n = try FD.read(fd, into: &chunk) } catch { n = 0 }  // An input that cannot be read is at its end.
        if n <= 0 {
            ended = true
            return false
        }
        pending += chunk[0..<n]
        return true
    }

    /// The next line without its line end; a last line without one counts; nil at end of input.
    mutating func nextLine() -> String? {
        while true {
            if let newline = pending[start...].firstIndex(of: 10) {
                let line = String(decoding: pending[start..<newline], as: UTF8.self)
                start = newline + 1
                return line
            }
            if !fill() {
                guard start < pending.count else { return nil }
                let line = String(decoding: pending[start...], as: UTF8.self)
                start = pending.count
                return line
            }
        }
    }

    /// The next byte; nil at end of input.
    mutating func nextByte() -> UInt8? {
        if start >= pending.count && !fill() { return nil }
        if start >= pending.count { return nil }
        defer { start += 1 }
        return pending[start]
    }
}
