/// A usage error: printed on stderr with the usage line, exit status 64.
package struct UsageError: Error, CustomStringConvertible, Equatable {
    package var message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// Walks command-line arguments the way swift-argument-parser does: `--name value` and
/// `--name=value`, `--` ends options, and the first positional argument ends option parsing
/// when `stopAtPositional` is set (so a program's own flags pass through untouched).
package struct ArgumentScanner {
    package enum Token: Equatable {
        case option(String, inline: String?)
        case positional(String)
    }

    let arguments: [String]
    var index = 0
    package private(set) var sawTerminator = false

    package init(_ arguments: [String]) { self.arguments = arguments }

    /// The next option or positional argument; nil at the end.
    package mutating func next() -> Token? {
        guard index < arguments.count else { return nil }
        let argument = arguments[index]
        index += 1
        if !sawTerminator && argument == "--" {
            sawTerminator = true
            return next()
        }
        if !sawTerminator && argument.hasPrefix("-") && argument.count > 1 {
            if argument.hasPrefix("--"), let eq = argument.firstIndex(of: "=") {
                return .option(String(argument[..<eq]), inline: String(argument[argument.index(after: eq)...]))
            }
            return .option(argument, inline: nil)
        }
        return .positional(argument)
    }

    /// Everything not yet read.
    package mutating func rest() -> [String] {
        defer { index = arguments.count }
        return Array(arguments[index...])
    }

    /// The value of an option: its inline `=value` or the next argument.
    package mutating func value(of name: String, inline: String?) throws(UsageError) -> String {
        if let inline { return inline }
        guard index < arguments.count else { throw UsageError("option \(name) needs a value") }
        index += 1
        return arguments[index - 1]
    }

    /// Consumes the next argument when it is exactly `word` (an optional value: `--stdin all`).
    package mutating func take(_ word: String) -> Bool {
        guard !sawTerminator, index < arguments.count, arguments[index] == word else { return false }
        index += 1
        return true
    }

    /// A flag takes no value: `--keep-going=no` is a mistake, not a way to turn it off.
    package func flag(_ name: String, inline: String?) throws(UsageError) {
        if let inline { throw UsageError("option \(name) takes no value (got '\(inline)'); leave it out to turn it off") }
    }

    package mutating func number<T: LosslessStringConvertible & Comparable>(
        of name: String, inline: String?, minimum: T
    ) throws(UsageError) -> T {
        let text = try value(of: name, inline: inline)
        guard let value = T(text), value >= minimum else {
            throw UsageError("option \(name) needs a number of at least \(minimum), not '\(text)'")
        }
        return value
    }
}
