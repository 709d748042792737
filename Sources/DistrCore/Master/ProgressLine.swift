import Synchronization

/// The live progress line shown on stderr while output is held (`--group`, `--gather`, `-q`) and
/// stderr is a terminal: `distr: 3 running, 1 done, 0 failed, 12.3 s`, redrawn in place at most
/// five times a second and erased when the job ends. Never drawn when stderr is not a terminal.
package final class ProgressLine: Sendable {
    /// How the job stands, read each time the line is drawn.
    package struct Counts: Sendable, Equatable {
        package var running: Int
        package var done: Int
        package var failed: Int
        package init(running: Int, done: Int, failed: Int) {
            (self.running, self.done, self.failed) = (running, done, failed)
        }
    }

    /// Moves to the start of the line and clears it (carriage return, then ANSI "erase to end of line").
    package static let erase = "\r\u{1B}[K"

    /// The text of the line (without the erase that precedes it).
    package static func text(_ counts: Counts, elapsed: Double) -> String {
        let tenths = Int((max(0, elapsed) * 10).rounded(.down))
        return "distr: \(counts.running) running, \(counts.done) done, \(counts.failed) failed, \(tenths / 10).\(tenths % 10) s"
    }

    private let fd: Int32
    private let counts: @Sendable () -> Counts
    private let stopped = Latch()
    private let ended = Latch()
    /// Whether the line is on the screen now; writes of other text erase it first.
    private let drawn = Mutex(false)
    private let start = Clock.now

    /// Starts drawing on `fd` every `interval` seconds until `stop`.
    package init(fd: Int32, interval: Double = 0.2, counts: @escaping @Sendable () -> Counts) {
        self.fd = fd
        self.counts = counts
        Threads.start(name: "distr-progress") { [self] in
            while !stopped.wait(until: .after(interval)) {
                let line = Self.erase + Self.text(self.counts(), elapsed: Clock.now - start)
                drawn.withLock { drawn in
                    try? FD.writeAll(fd, Array(line.utf8))  // stderr can no longer be written: the line is not shown.
                    drawn = true
                }
            }
            ended.open()
        }
    }

    /// Writes `bytes` to `target` (default: the line's own descriptor) with the line erased
    /// first; it is drawn again at the next tick.
    package func write(_ bytes: [UInt8], to target: Int32? = nil) {
        erased {
            if !bytes.isEmpty { try? FD.writeAll(target ?? fd, bytes) }  // The reader has gone (as `head` does): dropped, as the printer does.
        }
    }

    /// Runs `body`, which writes other text, with the line erased first and not drawn again
    /// until `body` returns (at the next tick).
    package func erased<T: Sendable>(_ body: () -> T) -> T {
        drawn.withLock { drawn in
            if drawn {
                try? FD.writeAll(fd, Array(Self.erase.utf8))  // stderr can no longer be written: nothing else to do.
                drawn = false
            }
            return body()
        }
    }

    /// Stops drawing and erases the line.
    package func stop() {
        stopped.open()
        ended.wait()
        write([])
    }
}
