@preconcurrency import Glibc

/// The few terminal calls the shell needs: is this a terminal, raw mode on and back off.
package enum Terminal {
    /// Settings saved by `enterRawMode`, to be given back to `restore`.
    package struct Settings: @unchecked Sendable {
        // @unchecked: termios is a plain C struct of integers and arrays of them, copied by value.
        fileprivate var saved: termios
    }

    /// True when `fd` is a terminal. The corresponding C function is `isatty`.
    package static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// Puts the terminal on `fd` in raw mode for line editing: bytes arrive one by one, not
    /// echoed, Ctrl-C and Ctrl-D as bytes rather than signals or end of file. Output processing
    /// (newline to CR LF) stays on. The corresponding C functions are `tcgetattr` and `tcsetattr`.
    /// - Returns: the settings before, for `restore`.
    /// - Throws: `SystemError` when `fd` is not a terminal.
    package static func enterRawMode(_ fd: Int32) throws(SystemError) -> Settings {
        var current = termios()
        if tcgetattr(fd, &current) != 0 { throw .current("tcgetattr") }
        let saved = Settings(saved: current)
        current.c_iflag &= ~tcflag_t(ICRNL | IXON | BRKINT | INPCK | ISTRIP)
        current.c_lflag &= ~tcflag_t(ECHO | ICANON | ISIG | IEXTEN)
        current.c_cflag |= tcflag_t(CS8)
        withUnsafeMutableBytes(of: &current.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        // TCSAFLUSH would drop keys typed ahead while the last command ran: TCSANOW keeps them.
        if tcsetattr(fd, TCSANOW, &current) != 0 { throw .current("tcsetattr") }
        return saved
    }

    /// Gives the terminal on `fd` its settings back. The corresponding C function is `tcsetattr`.
    package static func restore(_ fd: Int32, _ settings: Settings) {
        var saved = settings.saved
        // Nothing more can be done when the terminal has gone; the shell is leaving anyway then.
        _ = tcsetattr(fd, TCSANOW, &saved)
    }
}
