/// What `distr-master run PROGRAM ARGS...` runs on the nodes, and which local files it ships
/// for that.
///
/// The rules (README, "What gets shipped"):
/// - PROGRAM naming a local file by a relative path is shipped and run from the job directory.
///   When its name ends in `.py` it runs as `python3 PROGRAM` unless it is executable (owner's
///   x bit) and starts with `#!`; any other local program must be executable.
/// - Each later argument that is a relative path staying inside the current directory (no `.`
///   or `..` component after a leading `./`) and names an existing local regular file (symlinks
///   followed) is shipped at the same relative path, unless `--no-ship-args`. Arguments that
///   start with `-` are never shipped (`--input=data.csv` is an option, not a path).
/// An absolute PROGRAM is run as it is on each node; nothing is decided for it here.
package struct RunPlan: Sendable, Equatable {
    /// The command every rank runs.
    package var command: [String]
    /// Local paths to ship besides `--file`: the program (when local), then the argument files.
    package var shipped: [String]
    /// The argument files among `shipped`, as the user wrote them (for the note on stderr).
    package var argumentFiles: [String]

    /// The interpreter a `.py` program runs with: the first `python3` in the node's PATH.
    package static let python = "python3"

    /// Decides the plan, looking at the local files named.
    /// - Parameters:
    ///   - alsoShipped: the `--file` paths, whose files need no second mention.
    ///   - directory: where relative paths are looked up (the current directory; tests give another).
    /// - Throws: `RunPlanError` for a program that cannot run as given.
    package static func make(
        program: String, arguments: [String], shipArguments: Bool, alsoShipped: [String] = [], in directory: String = "."
    ) throws(RunPlanError) -> RunPlan {
        func local(_ path: String) -> String { path.utf8.first == 0x2F ? path : directory + "/" + path }
        let isAbsolute = program.utf8.first == 0x2F
        let isPath = program.utf8.contains(0x2F)
        let status = try? FileStatus(path: local(program))  // Missing or unreadable: not a local file.
        let isLocalFile = status?.kind == .regular
        // A relative path runs in the job directory, where only shipped files are: one that
        // does not exist here cannot exist there.
        if isPath && !isAbsolute && !isLocalFile { throw .missing(program) }
        var plan = RunPlan(command: [program] + arguments, shipped: [], argumentFiles: [])
        var taken = Set(alsoShipped.map(BundleCollector.bundlePath(for:)))
        if !isAbsolute, isLocalFile, let status {
            let path = BundleCollector.bundlePath(for: program)
            taken.insert(path)
            plan.shipped.append(program)
            let executable = status.permissions & 0o100 != 0
            let shebang = firstLine(of: local(program)).starts(with: [0x23, 0x21])
            if isPython(program) && !(executable && shebang) {
                plan.command = [python, path] + arguments
            } else if executable {
                plan.command = ["./" + path] + arguments
            } else {
                throw .notExecutable(program, interpreter: shebang ? interpreter(in: firstLine(of: local(program))) : nil)
            }
        }
        guard shipArguments else { return plan }
        for argument in arguments where isShippable(argument) {
            let path = BundleCollector.bundlePath(for: argument)
            // Already shipped as the program, by --file (itself or inside a shipped directory), or named twice.
            if taken.contains(path) || taken.contains(where: { path.utf8.starts(with: ($0 + "/").utf8) }) { continue }
            guard (try? FileStatus(path: local(argument)))?.kind == .regular else { continue }  // Missing or unreadable: an ordinary argument.
            taken.insert(path)
            plan.shipped.append(argument)
            plan.argumentFiles.append(argument)
        }
        return plan
    }

    /// True when the file's name (its last component) ends in `.py` and is more than that.
    /// Compared as bytes: `prog.p\u{79}\u{301}` does not end in `.py` for the kernel either.
    static func isPython(_ path: String) -> Bool {
        let name = Array(path.utf8).split(separator: 0x2F).last ?? []
        return name.count > 3 && name.suffix(3).elementsEqual(".py".utf8)
    }

    /// True when `argument` could name a file that keeps its place in the job directory: a
    /// relative path, not an option, whose components (after leading `./`) are neither empty,
    /// `.` nor `..`. Checked on bytes, as the kernel reads paths.
    static func isShippable(_ argument: String) -> Bool {
        var bytes = Array(argument.utf8)[...]
        if bytes.first == 0x2D || bytes.first == 0x2F { return false }
        while bytes.starts(with: [0x2E, 0x2F]) { bytes = bytes.dropFirst(2) }
        if bytes.isEmpty || bytes.contains(0) { return false }
        return bytes.split(separator: 0x2F, omittingEmptySubsequences: false).allSatisfy { component in
            !component.isEmpty && !component.elementsEqual([0x2E]) && !component.elementsEqual([0x2E, 0x2E])
        }
    }

    /// The first line of a file (at most 256 bytes); empty when it cannot be read.
    static func firstLine(of path: String) -> [UInt8] {
        let file: FileDescriptor
        do { file = try FileDescriptor.open(path, .readOnly) } catch { return [] }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count: Int
        do { count = try file.read(into: &buffer) } catch { return [] }
        return Array(buffer[0..<count].prefix { $0 != 0x0A })
    }

    /// The interpreter a `#!` line names, as a user would type it: `python3` for
    /// `#!/usr/bin/env python3`, `/bin/bash` for `#!/bin/bash -e`.
    static func interpreter(in line: [UInt8]) -> String? {
        let words = line.dropFirst(2).split(whereSeparator: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }).map {
            String(decoding: $0, as: UTF8.self)
        }
        guard let first = words.first else { return nil }
        if first == "/usr/bin/env" || first == "/bin/env" {
            return words.dropFirst().first { !$0.hasPrefix("-") && !$0.contains("=") }
        }
        return first
    }

    /// The note `distr-master` prints when it ships argument files: one line, at most five
    /// names.
    package static func note(shipping files: [String]) -> String {
        let shown = files.prefix(5).joined(separator: ", ")
        let more = files.count > 5 ? " and \(files.count - 5) more" : ""
        return "shipping \(shown)\(more) (named in the arguments; --no-ship-args to turn off)"
    }
}

/// A program `distr-master run` cannot run as given.
package enum RunPlanError: Error, CustomStringConvertible, Equatable {
    case missing(String)
    case notExecutable(String, interpreter: String?)

    package var description: String {
        switch self {
        case .missing(let program):
            "'\(program)' does not exist here, so it cannot be shipped; "
                + "give the path of a local program, or an absolute path that exists on every node"
        case .notExecutable(let program, let interpreter):
            "'\(program)' is not executable; chmod +x \(program), or name its interpreter: "
                + "distr-master run \(interpreter ?? "INTERPRETER") \(program)"
        }
    }
}
