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
        // The first failure ends the job, but only once every node was launched (JobPolicy
        // .launching): each rank tries, and one line names them all.
        #expect(lines == [Substring("distr: ranks [0-2]" + reason)], "\(run.stderr)")
        #expect(!run.stderr.contains("not started"), "\(run.stderr)")
    }
}
