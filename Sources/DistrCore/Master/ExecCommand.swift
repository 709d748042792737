/// What `distr-master exec COMMAND...` asks each worker to start.
///
/// The words are joined with spaces into one command line, as ssh does. A line that a shell would
/// only split at its blanks (plain words: letters, digits and `_-./,:+@%=`, no quoting, no
/// expansion, no redirection, not a shell builtin or keyword) is started directly, its words as
/// the argv: `/bin/sh` in front of it would only cost a fork and two program loads per rank (about
/// 0.7 ms of CPU each), which is what `mpirun` saves too. Anything else runs as `/bin/sh -c LINE`.
/// docs/exec.md states the rule for users.
package enum ExecCommand {
    /// The argv a rank starts with for `words`, given the job's `--env` entries.
    package static func arguments(_ words: [String], environment: [String]) -> [String] {
        // Not `joined(separator:)`: the standard library's generic join looks its conformances up
        // at run time on first use, about 50 µs of the master's start (docs/performance.md).
        var line = ""
        for (index, word) in words.enumerated() {
            if index > 0 { line.append(" ") }
            line.append(word)
        }
        return direct(line, environment: environment) ?? ["/bin/sh", "-c", line]
    }

    /// The words of `line` when no shell is needed to run it; nil otherwise.
    static func direct(_ line: String, environment: [String]) -> [String]? {
        // The worker looks the program up in its own PATH; a shell would use the job's.
        guard !environment.contains(where: { $0.utf8.starts(with: "PATH=".utf8) }) else { return nil }
        guard line.utf8.allSatisfy({ isPlain($0) || $0 == space || $0 == tab }) else { return nil }
        let words = line.utf8.split(whereSeparator: { $0 == space || $0 == tab }).map { String(decoding: $0, as: UTF8.self) }
        // An empty line, an assignment (`A=1 prog`) or a builtin needs the shell.
        guard let first = words.first, !first.utf8.contains(equals), !shellOnly.contains(first) else { return nil }
        return words
    }

    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")
    private static let equals = UInt8(ascii: "=")

    /// Bytes that mean nothing to a shell inside a word (ASCII letters, digits, `_-./,:+@%=`).
    private static func isPlain(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: ","), UInt8(ascii: ":"),
            UInt8(ascii: "+"), UInt8(ascii: "@"), UInt8(ascii: "%"), equals:
            true
        default: false
        }
    }

    /// Commands that only a shell has, or whose shell version behaves differently from the program
    /// of that name (`echo -e`, `pwd` and symlinks, `kill %1`), and the shell's keywords. `true`
    /// and `false` are not here: the programs do exactly what the builtins do.
    private static let shellOnly: Set<String> = [
        ".", ":", "alias", "bg", "break", "case", "cd", "chdir", "command", "continue", "do", "done", "echo", "elif", "else", "esac",
        "eval", "exec", "exit", "export", "fc", "fg", "fi", "for", "function", "getopts", "hash", "if", "in", "jobs", "kill", "local",
        "printf", "pwd", "read", "readonly", "return", "select", "set", "shift", "source", "test", "then", "time", "times", "trap",
        "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
    ]
}
