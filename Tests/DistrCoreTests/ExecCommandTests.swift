import Testing

@testable import DistrCore

@Suite struct ExecCommandTests {
    @Test func plainWords_runWithoutAShell() {
        #expect(ExecCommand.arguments(["true"], environment: []) == ["true"])
        #expect(ExecCommand.arguments(["ls", "-l", "/tmp/a_b.c"], environment: []) == ["ls", "-l", "/tmp/a_b.c"])
        // One string of plain words is split at its blanks, as the shell would.
        #expect(ExecCommand.arguments(["uname  -a\tx=1,y:2+3@4%5"], environment: ["OTHER=1"]) == ["uname", "-a", "x=1,y:2+3@4%5"])
    }

    @Test func shellSyntax_runsThroughTheShell() {
        for words in [
            ["echo $HOME"], ["ls", "*.txt"], ["a;b"], ["a", "|", "b"], ["a > out"], ["'quoted'"], ["\"quoted\""], ["a\\ b"], ["~/bin/x"],
            ["a &"], ["(a)"], ["a#b"], ["x", "[ab]"], ["x", "a?"], ["prog", "{a,b}"], ["caf\u{E9}"], ["a\nb"],
        ] {
            #expect(ExecCommand.arguments(words, environment: []) == ["/bin/sh", "-c", words.joined(separator: " ")], "\(words)")
        }
    }

    @Test func builtinsAssignmentsAndEmptyLines_runThroughTheShell() {
        for line in ["cd /tmp", "echo hi", "exit 3", "A=1 prog", "export A=1", ":", ". ./env", "if", "", "  ", "ulimit -n", "pwd"] {
            #expect(ExecCommand.arguments([line], environment: []) == ["/bin/sh", "-c", line], "\(line)")
        }
    }

    @Test func aPathInTheJobsEnvironment_keepsTheShellsLookUp() {
        #expect(ExecCommand.arguments(["prog"], environment: ["PATH=/opt/bin"]) == ["/bin/sh", "-c", "prog"])
        #expect(ExecCommand.arguments(["prog"], environment: ["MYPATH=/opt/bin"]) == ["prog"])
    }
}
