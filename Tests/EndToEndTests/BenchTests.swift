import Foundation
import Testing

@testable import DistrCore

/// distr-bench's command line and the shape of its JSON report (issue 9 §1). No timing is
/// asserted: only that the report has every field, and that `met` is computed.
@Suite(.hangGuard) struct BenchTests {
    init() { Signals.ignorePipe() }

    static var bench: String { Binaries.directory + "/distr-bench" }

    static func run(_ arguments: [String]) throws -> MasterRun { TestProcess.run(try TestProcess([bench] + arguments), timeout: 100) }

    @Test func unknownOption_isAUsageErrorAndRunsNothing() throws {
        let run = try Self.run(["--bogus"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("unknown option '--bogus'"), "\(run.stderr)")
        #expect(run.stderr.contains("usage: distr-bench"), "\(run.stderr)")
        #expect(run.stdout.isEmpty)
    }

    @Test func unknownGroup_isAUsageErrorListingTheGroups() throws {
        let run = try Self.run(["--only", "launch,nope"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("unknown group 'nope'") && run.stderr.contains("collectives"), "\(run.stderr)")
    }

    @Test func helpAndVersion_exitZeroOnStdout() throws {
        let help = try Self.run(["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("--compare-mpi") && help.stdout.contains("--only"), "\(help.stdout)")
        let version = try Self.run(["--version"])
        #expect(version.status == 0)
        #expect(version.stdout == "distr-bench \(DistrVersion.string) (protocol \(Handshake.version))\n")
    }

    struct Report: Decodable {
        struct Case: Decodable {
            var name: String
            var unit: String
            var distr: Double?
            var baseline: Double?
            var ratio: Double?
            var target: String?
            var met: Bool?
        }
        var version: String
        var cores: Int
        var machine: String
        var date: String
        var command: String
        var cases: [Case]
    }

    @Test func jsonOfTheLaunchGroup_hasEveryFieldAndAComputedMet() throws {
        let run = try Self.run(["--json", "--only", "launch", "--quick"])
        #expect(run.status == 0, "\(run.stderr)")
        let report = try JSONDecoder().decode(Report.self, from: Data(run.stdoutBytes))
        #expect(report.version == DistrVersion.string)
        #expect(report.cases.count == 3, "\(report.cases)")
        // Missing values are written as null, not left out.
        let raw = try #require(try JSONSerialization.jsonObject(with: Data(run.stdoutBytes)) as? [String: Any])
        for item in try #require(raw["cases"] as? [[String: Any]]) {
            for key in ["name", "unit", "distr", "baseline", "ratio", "target", "met"] {
                #expect(item.keys.contains(key), "\(key) missing in \(item)")
            }
        }
        for item in report.cases {
            #expect(item.unit == "ms" && item.distr != nil && item.baseline != nil && item.ratio != nil, "\(item)")
        }
        // 4 ranks has a target (within 3x of the spawn floor): met is true or false, as the
        // ratio says; the others have none: null.
        let four = try #require(report.cases.first { $0.name.hasSuffix("on 4 ranks") })
        let ratio = try #require(four.ratio)
        #expect(four.target == "≤ 3x")
        #expect(four.met == (ratio <= 3))
        let one = try #require(report.cases.first { $0.name.hasSuffix("on 1 rank") })
        #expect(one.met == nil && one.target == nil, "\(one)")
    }
}
