/// The Python modules every Python rank can import (`import distr`, `from mpi4py import MPI`).
///
/// The worker binary carries their sources (`PythonSources.swift`, written by `python/embed`),
/// so a node needs nothing but the worker and `python3`. At start-up the worker installs them
/// once under its work directory:
///
/// ```
/// WORKDIR/.distr-python/DIGEST/lib/distr/...               (python/distr/)
/// WORKDIR/.distr-python/DIGEST/mpi4py-shim/mpi4py/...      (python/mpi4py/)
/// ```
///
/// DIGEST is the start of a SHA-256 over every path and content, so workers of different
/// versions sharing a work directory each find their own. The directory is written under a
/// temporary name and renamed into place: a directory with that name is always complete, and a
/// second worker starting at the same time either wins the rename or uses the winner's copy.
/// It is not a job directory and has no job record, so neither job cleanup nor the reclaim of
/// a crashed worker's jobs touches it.
package struct PythonModules: Sendable, Equatable {
    /// `WORKDIR/.distr-python/DIGEST`.
    package let directory: String

    /// What holds the `distr` package: always on a Python rank's path.
    package var library: String { directory + "/lib" }
    /// What holds distr's `mpi4py` package: on the path unless the job sets `DISTR_MPI4PY=0`.
    package var mpi4pyShim: String { directory + "/mpi4py-shim" }

    /// The top directory of the packages, by the first component of a source path.
    static let places = ["distr": "lib", "mpi4py": "mpi4py-shim"]

    /// The name of the directory for `sources`: 16 hex digits of a SHA-256 over every path and
    /// content, each followed by a NUL (no path or Python source contains one).
    static func digest(of sources: [(path: String, contents: String)]) -> String {
        var hasher = SHA256()
        for source in sources {
            hasher.update(source.path.utf8)
            hasher.update([0])
            hasher.update(source.contents.utf8)
            hasher.update([0])
        }
        return String(hasher.finalize().hex.prefix(16))
    }

    /// Where a worker without `--python-dir` installs them: `WORKDIR/.distr-python`.
    package static func defaultRoot(workDirectory: String) -> String { workDirectory + "/.distr-python" }

    /// Installs `sources` under `workDirectory`'s default root (see `install(root:sources:python:)`).
    package static func install(
        in workDirectory: String, sources: [(path: String, contents: String)] = pythonSources, python: String? = "python3"
    ) throws(PythonModulesError) -> (modules: PythonModules, note: String?) {
        try install(root: defaultRoot(workDirectory: workDirectory), sources: sources, python: python)
    }

    /// Installs `sources` in `root/DIGEST`, or checks an installed copy and uses it.
    /// A copy whose files differ from `sources` (changed by hand, or by a rank: ranks run as the
    /// worker's user) is replaced.
    ///
    /// A new copy is compiled to bytecode by `python` (`python3 -m compileall`, as pip does when
    /// it installs a package) before it is renamed into place, so ranks load the modules instead
    /// of compiling them, about 50 ms of CPU per rank, and whatever `PYTHONDONTWRITEBYTECODE`
    /// says. Python's bytecode cache (`__pycache__` directories) is therefore part of a copy and
    /// not a change; Python loads a cached file only for a source beside it.
    /// - Parameter python: the interpreter that compiles; nil, missing or failing: no bytecode
    ///   (ranks compile on import, as before), and the note says why.
    /// - Returns: the installed modules and, when a changed copy was replaced or the bytecode
    ///   could not be made, a line for the log.
    /// - Throws: `PythonModulesError` naming the path and the failing call.
    package static func install(
        root: String, sources: [(path: String, contents: String)] = pythonSources, python: String? = "python3"
    ) throws(PythonModulesError) -> (modules: PythonModules, note: String?) {
        let final = root + "/" + digest(of: sources)
        var files: [(path: String, bytes: [UInt8])] = []
        for source in sources {
            let slash = source.path.utf8.firstIndex(of: 0x2F) ?? source.path.utf8.endIndex
            let package = String(decoding: source.path.utf8[..<slash], as: UTF8.self)
            guard let place = places[package] else { throw .unknownPackage(source.path) }
            files.append((place + "/" + source.path, Array(source.contents.utf8)))
        }
        do { try FileIO.makeDirectories(root) } catch { throw .cannotWrite(root, error) }
        var note: String?
        if FileIO.exists(final) {
            if let changed = firstDifference(in: final, from: files) {
                note = "the installed Python modules in \(final) differ from this worker's (\(changed)); installed them again"
                try removeAside(final, root: root)
            } else {
                return (PythonModules(directory: final), nil)
            }
        }
        let temporary: String
        do { temporary = try FileIO.makeTemporaryDirectory(template: root + "/tmp-XXXXXX") } catch { throw .cannotWrite(root, error) }
        for file in files {
            let path = temporary + "/" + file.path
            do {
                if let slash = path.lastIndex(of: "/") { try FileIO.makeDirectories(String(path[..<slash])) }
                try FileIO.write(path, file.bytes, mode: 0o444, exclusive: true)
            } catch {
                FileIO.removeTree(temporary)
                throw .cannotWrite(path, error)
            }
        }
        if let python, let failure = compile(temporary, python: python) {
            note = (note.map { $0 + "; " } ?? "") + failure
        }
        do { try FileIO.rename(temporary, to: final) } catch {
            FileIO.removeTree(temporary)
            // Another worker sharing the work directory installed the same sources first.
            guard error.code == .directoryNotEmpty || error.code == .exists, firstDifference(in: final, from: files) == nil else {
                throw .cannotWrite(final, error)
            }
        }
        return (PythonModules(directory: final), note)
    }

    /// Whether the `distr` package has no bytecode yet (installed without, or its compiling was
    /// cut short).
    package var lacksBytecode: Bool { !FileIO.exists(library + "/distr/__pycache__") }

    /// Compiles the modules on a thread of their own and at the lowest CPU priority, so that
    /// neither the worker's start nor its first jobs wait for the interpreter; ranks that start
    /// meanwhile compile on import, as without bytecode.
    /// Python writes each bytecode file under a temporary name and renames it into place.
    /// - Parameters:
    ///   - log: gets one line: done, or why it did not work.
    ///   - helpers: where the compile is known as the worker's own while it runs.
    package func compileInBackground(python: String = "python3", log: @escaping @Sendable (String) -> Void, helpers: HelperProcesses? = nil) {
        let directory = directory
        Threads.start(name: "distr-pycompile") {
            log(Self.compile(directory, python: python, background: true, helpers: helpers) ?? "compiled the Python modules in \(directory)")
        }
    }

    /// How long compiling may take before the interpreter is killed and the copy is used without
    /// bytecode: wall-clock time in the foreground (`--local`'s master waits for it).
    static let compileTimeLimit = 60.0
    /// In the background, at nice 19, a compile can wait for the CPU for as long as other work
    /// keeps every core busy (seen: over 30 s for 0.2 s of CPU while a test suite ran), and
    /// waiting is not a fault. So the limit there is CPU time (`RLIMIT_CPU`), with a wall-clock
    /// limit only against a compile that never ends.
    static let backgroundCPULimit = 60
    package static let backgroundWallLimit = 900.0

    /// Compiles every module under `directory` to bytecode with `python -m compileall`.
    /// - Returns: nil when it worked; otherwise why not, for the log.
    /// - Parameter cpuLimit: the CPU seconds a background compile may use.
    /// - Parameter helpers: see `compileInBackground`.
    static func compile(
        _ directory: String, python: String, background: Bool = false, cpuLimit: Int = backgroundCPULimit, helpers: HelperProcesses? = nil
    ) -> String? {
        let exit = ChildExit()
        let pid: Int32
        let request = SpawnRequest(
            arguments: [python, "-m", "compileall", "-q", directory], environment: Environment.all.map { "\($0.key)=\($0.value)" },
            stdout: 2, stderr: 2, parentDeathSignal: .kill)
        do {
            let spawn = { () throws(SystemError) in try Spawner.spawn(request, onExit: exit.record) }
            pid = try helpers.map { helpers throws(SystemError) in try helpers.start(spawn) } ?? spawn()
        } catch {
            return "cannot start '\(python)' to compile the Python modules (\(error)); Python ranks will compile the modules on import"
        }
        defer { helpers?.ended(pid) }
        if background {
            try? ProcessTable.lowerPriority(pid)  // ESRCH: it has finished already.
            try? ProcessTable.limitCPUTime(pid, seconds: cpuLimit)  // ESRCH: it has finished already.
        }
        let limit = background ? backgroundWallLimit : compileTimeLimit
        guard let status = exit.wait(until: .after(limit)) else {
            ProcessTable.signalGroup(pid, Signal.kill.rawValue)
            exit.wait()
            return "'\(python) -m compileall' did not finish in \(Int(limit)) s and was killed; Python ranks will compile the modules on import"
        }
        guard status == .exited(0) else {
            let why =
                background && status == .signaled(Signal.cpuLimit.rawValue) ? "used its \(cpuLimit) s of CPU and was killed" : "failed (\(status))"
            return "'\(python) -m compileall' \(why); Python ranks will compile the modules on import"
        }
        return nil
    }

    /// The first installed file that is missing, differs from `files`, is not a plain file, or
    /// should not be there (a `sitecustomize.py` dropped in would run in every Python rank),
    /// described for the log.
    private static func firstDifference(in directory: String, from files: [(path: String, bytes: [UInt8])]) -> String? {
        for file in files {
            let path = directory + "/" + file.path
            let installed: [UInt8]
            do {
                guard try FileStatus(path: path, followingSymlinks: false).kind == .regular else { return "\(file.path) is not a plain file" }
                installed = try FileIO.readAll(path)
            } catch { return "\(file.path): \(error.reason)" }
            let same = installed.withUnsafeBytes { read in file.bytes.withUnsafeBytes { Memory.equal(read, $0) } }
            if !same { return "\(file.path) was changed" }
        }
        let expected = Set(files.map(\.path))
        // Iterative: a rank could have made the tree arbitrarily deep.
        var pending = [""]
        while let relative = pending.popLast() {
            let entries: [Directory.Entry]
            do { entries = try Directory(path: relative.isEmpty ? directory : directory + "/" + relative).entries() } catch {
                return "\(relative): \(error.reason)"
            }
            for entry in entries {
                let path = relative.isEmpty ? entry.string : relative + "/" + entry.string
                // d_type may be DT_UNKNOWN: ask lstat (a symlink to a directory is not followed).
                let kind = (try? FileStatus(path: directory + "/" + path, followingSymlinks: false))?.kind  // Vanished: counted as added below.
                if kind == .directory {
                    if entry.string != "__pycache__" { pending.append(path) }
                } else if !expected.contains(path) {
                    return "\(path) was added"
                }
            }
        }
        return nil
    }

    /// Moves `directory` out of the way under a fresh name, then removes it (ranks still
    /// reading the old copy keep their open files).
    private static func removeAside(_ directory: String, root: String) throws(PythonModulesError) {
        let aside: String
        do {
            aside = try FileIO.makeTemporaryDirectory(template: root + "/old-XXXXXX")
            try FileIO.rename(directory, to: aside + "/copy")
        } catch { throw .cannotWrite(directory, error) }
        let report = FileIO.removeTree(aside)
        if !report.isComplete { throw .cannotRemove(aside, "\(report)") }
    }

    /// The `PYTHONPATH` of a rank whose environment (the worker's, then the job's) is `environment`:
    /// distr's modules first, then whatever the environment already had.
    package func pythonPath(environment: [String: String]) -> String {
        var parts = [library]
        if environment["DISTR_MPI4PY"] != "0" { parts.append(mpi4pyShim) }
        if let existing = environment["PYTHONPATH"], !existing.isEmpty { parts.append(existing) }
        return parts.joined(separator: ":")
    }
}

/// Why the worker could not install its Python modules.
package enum PythonModulesError: Error, CustomStringConvertible, Equatable {
    case cannotWrite(String, SystemError)
    case cannotRemove(String, String)
    case unknownPackage(String)

    package var description: String {
        switch self {
        case .cannotWrite(let path, let error):
            "cannot install the Python modules at '\(path)' (\(error)); Python ranks will not find `import distr`: make the work directory writable (--work-dir), or give another place (--python-dir)"
        case .cannotRemove(let path, let report):
            "cannot remove a changed copy of the Python modules at '\(path)' (\(report)); remove it by hand"
        case .unknownPackage(let path):
            "the embedded Python source '\(path)' is not under distr/ or mpi4py/; fix python/embed"
        }
    }
}
