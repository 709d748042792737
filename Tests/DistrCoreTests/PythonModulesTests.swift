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
            case "added": try FileIO.write(modules.library + "/sitecustomize.py", Array("import os\n".utf8), mode: 0o644, exclusive: true)
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
