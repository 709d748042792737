import Foundation
import Testing

@testable import DistrCore

/// The Python sources embedded in the worker, and how it installs them.
@Suite struct PythonModulesTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Every file under python/distr/ and python/mpi4py/, as python/embed collects them.
    static func sourcesOnDisk() throws -> [String: String] {
        var found: [String: String] = [:]
        for package in ["distr", "mpi4py"] {
            let top = repository + "/python/" + package
            let enumerator = try #require(FileManager.default.enumerator(atPath: top))
            while let relative = enumerator.nextObject() as? String {
                let name = (relative as NSString).lastPathComponent
                if name == "__pycache__" || name.hasPrefix(".") {
                    enumerator.skipDescendants()
                    continue
                }
                if name.hasSuffix(".pyc") || name.hasSuffix(".pyo") { continue }
                var isDirectory: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: top + "/" + relative, isDirectory: &isDirectory)
                if isDirectory.boolValue { continue }
                found[package + "/" + relative] = try String(contentsOfFile: top + "/" + relative, encoding: .utf8)
            }
        }
        return found
    }

    @Test func embeddedSources_equalTheFilesOnDisk() throws {
        let onDisk = try Self.sourcesOnDisk()
        let embedded = Dictionary(pythonSources.map { ($0.path, $0.contents) }, uniquingKeysWith: { first, _ in first })
        #expect(embedded.count == pythonSources.count, "a path is embedded twice: run python/embed")
        #expect(Set(embedded.keys) == Set(onDisk.keys), "PythonSources.swift lists other files than python/ holds: run python/embed")
        for (path, text) in onDisk where embedded[path] != nil {
            #expect(embedded[path] == text, "python/\(path) changed since PythonSources.swift was written: run python/embed")
        }
        #expect(embedded["distr/__init__.py"] != nil && embedded["mpi4py/__init__.py"] != nil && embedded["mpi4py/MPI.py"] != nil)
    }

    /// Runs python/embed on a tree holding `files` under python/ (plus empty packages).
    func embed(_ files: [String: [UInt8]]) throws -> (status: RankStatus, output: String, swift: String) {
        let root = try makeTemporaryDirectory()
        defer { FileIO.removeTree(root) }
        for package in ["distr", "mpi4py"] { try FileIO.makeDirectories(root + "/python/" + package) }
        for (path, bytes) in files { try FileIO.write(root + "/python/" + path, bytes, mode: 0o644, exclusive: false) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let (status, output) = try SpawnerTests.run(
            "PATH='\(path)' python3 '\(Self.repository)/python/embed' --root '\(root)' --output '\(root)/out.swift'")
        let swift = (try? FileIO.readAll(root + "/out.swift")).map { String(decoding: $0, as: UTF8.self) } ?? ""  // Not written: "".
        return (status, output, swift)
    }

    @Test(arguments: [
        ("\"\"\"##", "contains the sequence \"\"\"##"), ("x = '\\##('", "contains the sequence \\##"), ("a\r\n", "contains a carriage return"),
        ("\u{1B}[0m", "contains the control character U+001B"), ("\u{7F}", "contains the control character U+007F"),
    ])
    func embed_refusesWhatWouldBreakTheRawStringLiteral(text: String, reason: String) throws {
        let result = try embed(["distr/__init__.py": Array("ok = 1\n\(text)\n".utf8)])
        #expect(result.status == .exited(1))
        #expect(result.output.contains("python/distr/__init__.py:2 \(reason)"), "\(result.output)")
        #expect(result.swift.isEmpty)
    }

    @Test func embed_refusesSourcesThatAreNotUTF8() throws {
        let result = try embed(["mpi4py/MPI.py": [0x61, 0xFF, 0x0A]])
        #expect(result.status == .exited(1))
        #expect(result.output.contains("python/mpi4py/MPI.py is not UTF-8"), "\(result.output)")
    }

    @Test func embed_writesEachFileAsOneRawLiteral_skippingCaches() throws {
        let tricky = "\"\"\"doc\"\"\" \\(x) #\"\"\"# \\n \u{E9}\n\tindented\nno newline at the end"
        let result = try embed([
            "distr/__init__.py": Array(tricky.utf8), "distr/x.pyc": [0xFF], "mpi4py/MPI.py": Array("\n".utf8), "mpi4py/.hidden": [0xFF],
        ])
        #expect(result.status == .exited(0), "\(result.output)")
        #expect(result.swift.contains("    (\"distr/__init__.py\", ##\"\"\"\n\(tricky)\n\"\"\"##),\n"), "\(result.swift)")
        #expect(result.swift.contains("    (\"mpi4py/MPI.py\", ##\"\"\"\n\n\n\"\"\"##),\n"), "\(result.swift)")
        #expect(!result.swift.contains("x.pyc") && !result.swift.contains(".hidden"))
        #expect(result.swift.hasPrefix("// swift-format-ignore-file\n"))
    }

    static let sample: [(path: String, contents: String)] = [
        ("distr/__init__.py", "X = 1\n"), ("distr/_sub/x.py", "\"\"\"doc\"\"\"\n"), ("mpi4py/__init__.py", ""), ("mpi4py/MPI.py", "rank = 0\n"),
    ]

    func withWorkDirectory(_ body: (String) throws -> Void) throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        try body(dir)
    }

    @Test func install_writesTheLayout_underADirectoryNamedByTheDigest() throws {
        try withWorkDirectory { work throws in
            let (modules, note) = try PythonModules.install(in: work, sources: Self.sample)
            #expect(note == nil)
            #expect(modules.directory == work + "/.distr-python/" + PythonModules.digest(of: Self.sample))
            #expect(PythonModules.digest(of: Self.sample).count == 16)
            #expect(try FileIO.readAll(modules.library + "/distr/__init__.py") == Array("X = 1\n".utf8))
            #expect(try FileIO.readAll(modules.library + "/distr/_sub/x.py") == Array("\"\"\"doc\"\"\"\n".utf8))
            #expect(try FileIO.readAll(modules.mpi4pyShim + "/mpi4py/MPI.py") == Array("rank = 0\n".utf8))
            #expect(try names(in: modules.directory) == ["lib", "mpi4py-shim"])
            // Nothing but the installed directory is left (no temporary directory).
            #expect(try names(in: work + "/.distr-python") == [PythonModules.digest(of: Self.sample)])
        }
    }

    @Test func install_again_usesTheInstalledCopy_otherSourcesGetTheirOwnDirectory() throws {
        try withWorkDirectory { work throws in
            let first = try PythonModules.install(in: work, sources: Self.sample).modules
            let marker = try FileStatus(path: first.library + "/distr/__init__.py").modified
            let second = try PythonModules.install(in: work, sources: Self.sample)
            #expect(second.modules == first && second.note == nil)
            #expect(try FileStatus(path: first.library + "/distr/__init__.py").modified == marker)
            let other = try PythonModules.install(in: work, sources: [("distr/__init__.py", "X = 2\n")]).modules
            #expect(other.directory != first.directory)
            #expect(try names(in: work + "/.distr-python").count == 2)
        }
    }

    @Test(arguments: ["changed", "removed", "added", "symlinked"])
    func install_replacesACopyThatWasTamperedWith(how: String) throws {
        try withWorkDirectory { work throws in
            let modules = try PythonModules.install(in: work, sources: Self.sample).modules
            let target = modules.library + "/distr/__init__.py"
            switch how {
            case "changed": try FileIO.write(target, Array("X = 666\n".utf8), mode: 0o644, exclusive: false)
            case "removed": FileIO.unlink(target)
            case "added":
                try FileIO.write(modules.library + "/sitecustomize.py", Array("import os\n".utf8), mode: 0o644, exclusive: true)
            default:
                FileIO.unlink(target)
                try FileManager.default.createSymbolicLink(atPath: target, withDestinationPath: work + "/elsewhere.py")
                try FileIO.write(work + "/elsewhere.py", Array("X = 1\n".utf8), mode: 0o644, exclusive: true)
            }
            let again = try PythonModules.install(in: work, sources: Self.sample)
            #expect(again.modules == modules)
            #expect(again.note?.contains("differ from this worker's") == true, "\(again.note ?? "no note")")
            #expect(try FileStatus(path: target, followingSymlinks: false).kind == .regular)
            #expect(try FileIO.readAll(target) == Array("X = 1\n".utf8))
            #expect(!FileIO.exists(modules.library + "/sitecustomize.py"))
            #expect(try names(in: work + "/.distr-python") == [PythonModules.digest(of: Self.sample)])
        }
    }

    /// The bytecode files under `directory`, relative to it, sorted.
    func bytecode(in directory: String) throws -> [String] {
        var found: [String] = []
        var pending = [""]
        while let relative = pending.popLast() {
            for entry in try Directory(path: directory + relative).entries() {
                let path = relative + "/" + entry.string
                if try FileStatus(path: directory + path, followingSymlinks: false).kind == .directory {
                    pending.append(path)
                } else if path.hasSuffix(".pyc") {
                    found.append(path)
                }
            }
        }
        return found.sorted()
    }

    @Test func install_compilesEveryModule_andTheNextInstallKeepsTheBytecode() throws {
        try withWorkDirectory { work throws in
            let (modules, note) = try PythonModules.install(in: work, sources: Self.sample)
            #expect(note == nil)
            let compiled = try bytecode(in: modules.directory)
            // One file per module, in the __pycache__ beside it, for the interpreter that compiled.
            #expect(compiled.count == Self.sample.count, "\(compiled)")
            #expect(compiled.allSatisfy { $0.contains("/__pycache__/") })
            #expect(compiled.contains { $0.hasPrefix("/lib/distr/_sub/__pycache__/x.") })
            let marker = try FileStatus(path: modules.directory + compiled[0]).modified
            // The bytecode is part of the copy, not a change to it.
            let again = try PythonModules.install(in: work, sources: Self.sample)
            #expect(again.modules == modules && again.note == nil, "\(again.note ?? "")")
            #expect(try bytecode(in: modules.directory) == compiled)
            #expect(try FileStatus(path: modules.directory + compiled[0]).modified == marker)
        }
    }

    @Test(arguments: [
        ("/nonexistent/python3", "cannot start '/nonexistent/python3'"), ("/bin/false", "'/bin/false -m compileall' failed (exit 1)"),
    ])
    func install_whenTheModulesCannotBeCompiled_installsThemWithoutBytecode_andSaysWhy(python: String, reason: String) throws {
        try withWorkDirectory { work throws in
            let (modules, note) = try PythonModules.install(in: work, sources: Self.sample, python: python)
            #expect(note?.contains(reason) == true && note?.contains("compile the modules on import") == true, "\(note ?? "no note")")
            #expect(try FileIO.readAll(modules.library + "/distr/__init__.py") == Array("X = 1\n".utf8))
            #expect(try bytecode(in: modules.directory).isEmpty)
        }
    }

    /// In the background the limit is CPU time: a compile that only waits (for the CPU, at nice
    /// 19 on a busy machine) is not ended, one that keeps computing is.
    @Test(arguments: [
        ("sleep 1.5", nil),
        ("while :; do :; done", "-m compileall' used its 1 s of CPU and was killed; Python ranks will compile the modules on import"),
    ])
    func backgroundCompile_isLimitedByCPUTimeNotByWaiting(body: String, reason: String?) throws {
        try withWorkDirectory { work throws in
            let python = work + "/python"
            try FileIO.write(python, Array("#!/bin/sh\n\(body)\n".utf8), mode: 0o755, exclusive: true)
            let result = PythonModules.compile(work, python: python, background: true, cpuLimit: 1)
            if let reason { #expect(result?.hasSuffix(reason) == true, "\(result ?? "nil")") } else { #expect(result == nil, "\(result ?? "")") }
        }
    }

    @Test func install_byManyWorkersAtOnce_allGetOneCompleteCopy() async throws {
        let work = try makeTemporaryDirectory()
        defer { FileIO.removeTree(work) }
        let results = await withTaskGroup(of: Result<PythonModules, PythonModulesError>.self) { group in
            for _ in 0..<8 {
                group.addTask { Result { () throws(PythonModulesError) in try PythonModules.install(in: work, sources: Self.sample).modules } }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        for result in results { #expect(try result.get().directory == work + "/.distr-python/" + PythonModules.digest(of: Self.sample)) }
        #expect(try names(in: work + "/.distr-python") == [PythonModules.digest(of: Self.sample)])
    }

    @Test func install_inAWorkDirectoryThatCannotBeWritten_saysWhereAndWhatToDo() throws {
        try withWorkDirectory { work throws in
            // A file where the directory should be: no permission games, which root would ignore.
            try FileIO.write(work + "/.distr-python", [], mode: 0o644, exclusive: true)
            #expect {
                try PythonModules.install(in: work, sources: Self.sample)
            } throws: { error in
                let text = "\(error)"
                return text.contains(work + "/.distr-python") && text.contains("make the work directory writable")
            }
        }
    }

    @Test func install_refusesASourceOutsideTheTwoPackages() throws {
        try withWorkDirectory { work throws in
            #expect(throws: PythonModulesError.unknownPackage("site/x.py")) {
                try PythonModules.install(in: work, sources: [("site/x.py", "")])
            }
        }
    }

    @Test func pythonPath_putsTheModulesFirst_leavesTheShimOutForDistrMPI4PY0() {
        let modules = PythonModules(directory: "/w/.distr-python/d")
        #expect(modules.pythonPath(environment: [:]) == "/w/.distr-python/d/lib:/w/.distr-python/d/mpi4py-shim")
        #expect(
            modules.pythonPath(environment: ["PYTHONPATH": "/mine:/other"]) == "/w/.distr-python/d/lib:/w/.distr-python/d/mpi4py-shim:/mine:/other")
        #expect(modules.pythonPath(environment: ["DISTR_MPI4PY": "0", "PYTHONPATH": "/mine"]) == "/w/.distr-python/d/lib:/mine")
        #expect(modules.pythonPath(environment: ["DISTR_MPI4PY": "1", "PYTHONPATH": ""]) == "/w/.distr-python/d/lib:/w/.distr-python/d/mpi4py-shim")
    }
}
