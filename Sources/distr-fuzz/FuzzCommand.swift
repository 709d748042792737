@preconcurrency import Glibc
import DistrCore
import Foundation

/// The commands of `distr-fuzz` other than fuzzing itself.
enum FuzzCommand {
    static let usage = """
        usage: distr-fuzz TARGET [FILE|DIR]...       run each input through TARGET once (a build without libFuzzer)
               distr-fuzz TARGET [libFuzzer flags] [CORPUS]...   fuzz TARGET (a build with -sanitize=fuzzer: Fuzz/run)
               distr-fuzz --replay-all CORPUS [--skip LIST]   run every CORPUS/<target>/ file through its target,
                                                      except the CORPUS-relative paths listed in LIST
               distr-fuzz --write-seeds DIR           write the generated seed corpus to DIR/<target>/<name>
               distr-fuzz --list                      list the targets and their input formats
        DISTR_FUZZ_TARGET=TARGET may name the target instead of the first argument.
        """

    static func printUsage(to stream: UnsafeMutablePointer<FILE>, problem: String? = nil) {
        if let problem { fputs("distr-fuzz: \(problem)\n", stream) }
        fputs(usage + "\n", stream)
    }

    static func main(_ arguments: [String], underLibFuzzer: Bool) -> Int32 {
        var arguments = arguments
        if arguments.first.map(FuzzTarget.named) == nil, let name = ProcessInfo.processInfo.environment["DISTR_FUZZ_TARGET"] {
            arguments.insert(name, at: 0)
        }
        guard let command = arguments.first else {
            printUsage(to: stderr, problem: "name a target")
            return 64
        }
        switch command {
        case "-h", "--help":
            printUsage(to: stdout)
            return 0
        case "--list":
            for target in FuzzTarget.all { print("\(target.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(target.input)") }
            return 0
        case "--write-seeds":
            guard arguments.count == 2 else {
                printUsage(to: stderr, problem: "--write-seeds takes one directory")
                return 64
            }
            return writeSeeds(to: arguments[1])
        case "--replay-all":
            var skipList: String?
            if arguments.count == 4, arguments[2] == "--skip" {
                skipList = arguments[3]
            } else if arguments.count != 2 {
                printUsage(to: stderr, problem: "--replay-all takes a corpus directory and an optional --skip LIST")
                return 64
            }
            return replayAll(corpus: arguments[1], skipList: skipList)
        default:
            guard let target = FuzzTarget.named(command) else {
                printUsage(to: stderr, problem: "unknown target or option '\(command)'; --list shows the targets")
                return 64
            }
            if let flag = arguments.dropFirst().first(where: { $0.hasPrefix("-") }) {
                printUsage(
                    to: stderr, problem: "'\(flag)' is a libFuzzer flag, but this binary was built without -sanitize=fuzzer (use Fuzz/run)")
                return 64
            }
            var count = 0
            for path in arguments.dropFirst() {
                for file in files(at: path) {
                    replay(target, file)
                    count += 1
                }
            }
            print("replay: \(target.name): \(count) inputs, no crash")
            return 0
        }
    }

    /// The files at `path`: itself, or the regular files directly inside it, sorted.
    static func files(at path: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return [path] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []  // Unreadable or missing corpus: no seeds.
        return names.sorted().filter { !$0.hasPrefix(".") }.map { "\(path)/\($0)" }
    }

    /// Runs one input; names it on stderr first, so that a crash says which input it was.
    static func replay(_ target: FuzzTarget, _ file: String) {
        fputs("  \(target.name) < \(file)\n", stderr)
        guard let data = FileManager.default.contents(atPath: file) else {
            fputs("distr-fuzz: cannot read '\(file)'\n", stderr)
            exit(66)
        }
        target.run([UInt8](data))
    }

    static func replayAll(corpus: String, skipList: String?) -> Int32 {
        var skipped = Set<String>()
        if let skipList {
            guard let data = FileManager.default.contents(atPath: skipList) else {
                fputs("distr-fuzz: cannot read '\(skipList)'\n", stderr)
                return 66
            }
            skipped = Set(FuzzTarget.knownCrashes(String(decoding: data, as: UTF8.self)))
        }
        var count = 0
        for target in FuzzTarget.all {
            for name in files(at: "\(corpus)/\(target.name)").map({ $0.split(separator: "/").last.map(String.init) ?? $0 })
            where !skipped.contains("\(target.name)/\(name)") {
                replay(target, "\(corpus)/\(target.name)/\(name)")
                count += 1
            }
        }
        print("replay: \(FuzzTarget.all.count) targets, \(count) inputs, \(skipped.count) skipped, no crash")
        return 0
    }

    static func writeSeeds(to directory: String) -> Int32 {
        for seed in FuzzTarget.seeds() {
            let folder = "\(directory)/\(seed.target)"
            do {
                try FileIO.makeDirectories(folder, mode: 0o755)
                try FileIO.write("\(folder)/\(seed.name)", seed.bytes, mode: 0o644, exclusive: false)
            } catch {
                fputs("distr-fuzz: cannot write \(folder)/\(seed.name): \(error)\n", stderr)
                return 73
            }
        }
        print("wrote \(FuzzTarget.seeds().count) seeds to \(directory)")
        return 0
    }
}
