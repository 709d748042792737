@preconcurrency import Glibc
import DistrCore
import Foundation

enum BenchCommand {
    /// Parses the command line and runs; returns the exit status.
    static func main(_ arguments: [String]) -> Int32 {
        let options: BenchOptions
        do {
            switch try BenchOptions.parse(arguments) {
            case .help:
                print(BenchOptions.help)
                return 0
            case .version:
                print("distr-bench \(DistrVersion.string) (protocol \(Handshake.version))")
                return 0
            case .run(let parsed): options = parsed
            }
        } catch {
            CurrentProcess.printError("distr-bench: \(error)\n\(BenchOptions.usage)\n")
            return 64
        }
        return run(options)
    }

    static func run(_ options: BenchOptions) -> Int32 {
        Signals.ignorePipe()
        var report = Report.start(options: options)
        var bench: Bench
        do { bench = try Bench(options: options) } catch {
            CurrentProcess.printError("distr-bench: \(error)\n")
            return 1
        }
        defer {
            WorkerProcess.stop(bench.pool + bench.others)
            NamespacePair.destroy()
            FileIO.removeTree(bench.root)
        }
        var status: Int32 = 0
        for group in options.groups {
            if !options.json { CurrentProcess.printError("distr-bench: \(group.rawValue)...\n") }
            do {
                try run(group, &bench)
            } catch {
                // One group failing does not lose the others' numbers.
                CurrentProcess.printError("distr-bench: \(group.rawValue): \(error)\n")
                bench.notes.append("\(group.rawValue) could not run: \(error)")
                status = 1
            }
        }
        report.cases = bench.cases
        // Several groups may say the same (mpirun missing): once is enough.
        report.notes = bench.notes.enumerated().filter { !bench.notes.prefix($0.offset).contains($0.element) }.map(\.element)
        report.loadAfter = Report.load()
        if options.json { report.printJSON() } else { report.printTable() }
        return status
    }

    static func run(_ group: BenchGroup, _ bench: inout Bench) throws {
        switch group {
        case .launch: try bench.launch()
        case .ship: try bench.ship()
        case .relay: try bench.relay()
        case .gather: try bench.gather()
        case .messaging: try bench.messagingPaths()
        case .busy: try bench.busyLatency()
        case .collectives: try bench.collectives()
        case .scale: try bench.scale()
        case .python: try bench.python()
        }
    }
}
