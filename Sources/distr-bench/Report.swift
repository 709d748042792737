@preconcurrency import Glibc
import DistrCore
import Foundation

/// What the run was: the numbers, and the machine and moment they belong to.
struct Report: Encodable {
    var version = DistrVersion.string
    var date: String
    var command: String
    var machine: String
    var cpu: String
    var cores: Int
    /// /proc/loadavg's 1-minute load when the run started and when it ended: other work on the
    /// machine makes the numbers noisy (the ratios, measured side by side, less so).
    var loadBefore: String
    var loadAfter: String
    var quick: Bool
    var cases: [BenchCase]
    var notes: [String]

    /// Counts of targets met and missed.
    var met: Int { cases.filter { $0.met == true }.count }
    var missed: [BenchCase] { cases.filter { $0.met == false } }

    static func load() -> String {
        let text = (try? FileIO.readAll("/proc/loadavg")).map { String(decoding: $0, as: UTF8.self) }  // No /proc: no load.
        return text?.split(separator: " ").first.map(String.init) ?? "?"
    }

    static func machineFacts() -> (machine: String, cpu: String) {
        func read(_ path: String) -> String {
            let bytes = try? FileIO.readAll(path)  // Not Linux, or hidden: left blank.
            return String(decoding: bytes ?? [], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let kernel = read("/proc/sys/kernel/osrelease")
        let memory = read("/proc/meminfo").split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
        let kilobytes = memory.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        let cpu = read("/proc/cpuinfo").split(separator: "\n").first { $0.hasPrefix("model name") }
        let model = cpu.flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) } ?? "?"
        return ("\(read("/proc/sys/kernel/hostname")), Linux \(kernel), \(kilobytes / 1_048_576) GiB", model)
    }

    static func start(options: BenchOptions) -> Report {
        let facts = machineFacts()
        let formatter = ISO8601DateFormatter()
        return Report(
            date: formatter.string(from: Date()), command: CommandLine.arguments.joined(separator: " "), machine: facts.machine,
            cpu: facts.cpu, cores: SystemFacts.cores, loadBefore: load(), loadAfter: "", quick: options.quick, cases: [], notes: [])
    }

    func printTable() {
        func format(_ value: Double?) -> String {
            guard let value else { return "-" }
            return value >= 100 ? String(format: "%.0f", value) : value >= 1 ? String(format: "%.2f", value) : String(format: "%.3f", value)
        }
        print("distr \(version), \(date), \(machine), \(cores) cores (\(cpu)), load \(loadBefore) before, \(loadAfter) after")
        print("command: \(command)")
        print("")
        let header = ["case", "unit", "distr", "baseline", "ratio", "target", "met", "baseline is"]
        var rows = [header]
        for item in cases {
            let met = item.met.map { $0 ? "met" : "MISSED" } ?? (item.target == nil ? "" : "?")
            rows.append([
                item.name, item.unit, format(item.distr), format(item.baseline), item.ratio.map { String(format: "%.2fx", $0) } ?? "-",
                item.target ?? "", met, item.against,
            ])
        }
        let widths = (0..<header.count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let cells = row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
            print(cells.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
        print("")
        let checked = cases.filter { $0.met != nil }.count
        print("targets: \(met) of \(checked) met" + (missed.isEmpty ? "" : "; MISSED: " + missed.map(\.name).joined(separator: "; ")))
        for item in cases { if let problem = item.problem { print("problem: \(item.name): \(problem)") } }
        for note in notes { print("note: \(note)") }
    }

    func printJSON() {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            let data = try encoder.encode(self)
            print(String(decoding: data, as: UTF8.self))
        } catch {
            CurrentProcess.printError("distr-bench: cannot write the report as JSON: \(error)\n")
        }
    }
}
