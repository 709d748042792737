import Foundation
import Testing

@testable import DistrCore

/// The mistakes a new user makes first get one clear line each.
@Suite(.hangGuard) struct FirstMistakesTests {
    init() { Signals.ignorePipe() }

    @Test func runOfARelativeProgramThatDoesNotExist_isAUsageErrorBeforeAnyNodeIsAsked() throws {
        let dir = try TemporaryDirectory()
        let run = try TestProcess.master(["run", "--local", "3", "./missing"], directory: dir.path)
        #expect(run.status == 64)
        #expect(run.stderr.components(separatedBy: "'./missing' does not exist here").count == 2, "\(run.stderr)")
    }

    @Test func programMissingOnEveryNode_isReportedOnceWithTheRanksFolded() throws {
        let run = try TestProcess.master(["run", "--local", "3", "/nonexistent/program"])
        #expect(run.status == 127)
        let lines = run.stderr.split(separator: "\n").filter { $0.contains("/nonexistent/program") }
        let reason = " could not start: '/nonexistent/program' not found on this node (not shipped, and not in PATH)"
        // The first failure ends the job: a node slower to try (a loaded machine) may be ended
        // before it does, and its rank is then counted as not started. One line either way.
        let all = "distr: ranks [0-2]" + reason
        let folded = lines.count == 1 && lines[0].hasPrefix("distr: ranks [") && lines[0].hasSuffix(reason)
        #expect(lines == [Substring(all)] || folded && run.stderr.contains("1 not started or unknown"), "\(run.stderr)")
    }
}
