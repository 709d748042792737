import Foundation
import Testing

@testable import DistrCore

/// How `distr-master run PROGRAM ARGS...` becomes a command and a list of files to ship.
@Suite struct RunPlanTests {
    /// A directory holding `files` (name: (text, mode)); removed after `body`.
    func withFiles(_ files: [String: (String, mode_t)], _ body: (String) throws -> Void) throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        for (name, (text, mode)) in files {
            if let slash = name.lastIndex(of: "/") { try FileIO.makeDirectories(dir + "/" + name[..<slash]) }
            try FileIO.write(dir + "/" + name, Array(text.utf8), mode: mode, exclusive: true)
        }
        try body(dir)
    }

    func plan(_ program: String, _ arguments: [String] = [], ship: Bool = true, files: [String] = [], in dir: String) throws -> RunPlan {
        try RunPlan.make(program: program, arguments: arguments, shipArguments: ship, alsoShipped: files, in: dir)
    }

    @Test func pythonProgram_notExecutable_runsWithPython3() throws {
        try withFiles(["prog.py": ("print(1)\n", 0o644), "sub/tool.py": ("#!/usr/bin/env python3\n", 0o644)]) { dir throws in
            #expect(try plan("prog.py", ["x"], in: dir).command == ["python3", "prog.py", "x"])
            #expect(try plan("./prog.py", in: dir).command == ["python3", "prog.py"])
            // A #! line without the x bit is not enough.
            #expect(try plan("sub/tool.py", in: dir).command == ["python3", "sub/tool.py"])
            #expect(try plan("prog.py", in: dir).shipped == ["prog.py"])
        }
    }

    @Test func pythonProgram_executableWithoutShebang_runsWithPython3() throws {
        try withFiles(["prog.py": ("print(1)\n", 0o755)]) { dir throws in
            #expect(try plan("prog.py", in: dir).command == ["python3", "prog.py"])
        }
    }

    @Test func pythonProgram_executableWithShebang_runsAsItIs() throws {
        try withFiles(["prog.py": ("#!/usr/bin/env python3\nprint(1)\n", 0o755)]) { dir throws in
            #expect(try plan("prog.py", ["a"], in: dir).command == ["./prog.py", "a"])
        }
    }

    @Test func executableProgram_runsAsItIs_andAbsoluteProgramIsNotLookedAt() throws {
        try withFiles(["prog": ("\u{7F}ELF", 0o755)]) { dir throws in
            #expect(try plan("prog", in: dir).command == ["./prog"])
            #expect(try plan("/usr/bin/prog.py", ["a"], in: dir) == RunPlan(command: ["/usr/bin/prog.py", "a"], shipped: [], argumentFiles: []))
            #expect(try plan("python3", in: dir).command == ["python3"])
        }
    }

    @Test func nonExecutableProgram_isRefusedWithTheHint_namingTheShebangInterpreter() throws {
        try withFiles(["prog": ("binary", 0o644), "script": ("#!/bin/bash -e\necho\n", 0o644), "envy": ("#!/usr/bin/env -S ruby -w\n", 0o600)]) {
            dir throws in
            #expect(throws: RunPlanError.notExecutable("prog", interpreter: nil)) { try plan("prog", in: dir) }
            #expect(throws: RunPlanError.notExecutable("./script", interpreter: "/bin/bash")) { try plan("./script", in: dir) }
            #expect(throws: RunPlanError.notExecutable("envy", interpreter: "ruby")) { try plan("envy", in: dir) }
        }
        #expect(
            "\(RunPlanError.notExecutable("prog", interpreter: nil))"
                == "'prog' is not executable; chmod +x prog, or name its interpreter: distr-master run INTERPRETER prog")
        #expect("\(RunPlanError.notExecutable("s", interpreter: "python3"))".hasSuffix("distr-master run python3 s"))
    }

    @Test func missingRelativeProgram_isRefused() throws {
        try withFiles([:]) { dir throws in
            #expect(throws: RunPlanError.missing("./nothing")) { try plan("./nothing", in: dir) }
        }
    }

    @Test func argumentFiles_areShippedAtTheirRelativePath_optionsAndOutsidersAreNot() throws {
        let files: [String: (String, mode_t)] = [
            "prog.py": ("", 0o644), "data.csv": ("1,2\n", 0o644), "in/a.txt": ("a", 0o644), "in/b.txt": ("b", 0o644),
        ]
        try withFiles(files) { dir throws in
            let arguments = [
                "data.csv", "./in/a.txt", "--x=data.csv", "-in/b.txt", "missing.csv", "in", "in/./b.txt", "in/../data.csv",
                "in//b.txt", "data.csv", "prog.py", "/etc/hostname",
            ]
            let result = try plan("python3", ["prog.py"] + arguments, in: dir)
            #expect(result.command == ["python3", "prog.py"] + arguments)
            #expect(result.shipped == ["prog.py", "data.csv", "./in/a.txt"])
            #expect(result.argumentFiles == result.shipped)
            // The program itself and --file's files (or directories) are not named again.
            let local = try plan("prog.py", ["prog.py", "data.csv", "in/a.txt"], files: ["in"], in: dir)
            #expect(local.shipped == ["prog.py", "data.csv"])
            #expect(local.argumentFiles == ["data.csv"])
        }
    }

    @Test func noShipArgs_shipsOnlyTheProgram() throws {
        try withFiles(["prog.py": ("", 0o644), "data.csv": ("", 0o644)]) { dir throws in
            let result = try plan("prog.py", ["data.csv"], ship: false, in: dir)
            #expect(result.shipped == ["prog.py"])
            #expect(result.argumentFiles.isEmpty)
        }
    }

    @Test(arguments: [
        ("data.csv", true), ("./a/b", true), ("././a", true), ("a/b/c", true), ("", false), ("./", false), ("-", false),
        ("--f=x", false), ("/abs", false), ("../up", false), ("a/../b", false), ("a/./b", false), ("a//b", false), ("a/", false),
        ("..\u{301}/x", true), ("a\u{0}b", false),
    ])
    func isShippable_checksPathsAsBytes(argument: String, expected: Bool) {
        #expect(RunPlan.isShippable(argument) == expected)
    }

    @Test(arguments: [("p.py", true), ("dir/p.py", true), (".py", false), ("dir/.py", false), ("p.pyc", false), ("p.p\u{79}\u{301}", false)])
    func isPython_looksAtTheLastName(path: String, expected: Bool) {
        #expect(RunPlan.isPython(path) == expected)
    }

    @Test func note_isOneLine_namingAtMostFiveFiles() {
        #expect(RunPlan.note(shipping: ["prog.py", "data.csv"]) == "shipping prog.py, data.csv (named in the arguments; --no-ship-args to turn off)")
        let many = RunPlan.note(shipping: (1...8).map { "f\($0)" })
        #expect(many == "shipping f1, f2, f3, f4, f5 and 3 more (named in the arguments; --no-ship-args to turn off)")
    }
}
