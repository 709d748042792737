@preconcurrency import Glibc
import DistrCore

// distr-bench: launch and messaging costs of distr beside a plain baseline measured in the same
// run, with their ratios. `--json` prints one JSON object instead of the table.
let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--rank" {
    await RankBench.run(Array(arguments.dropFirst()))
}
let usage = "usage: distr-bench [--json] [--quick] [--no-netns] [--python-only]"
if arguments.contains("-h") || arguments.contains("--help") {
    print(usage)
    exit(0)
}
let known: Set = ["--json", "--quick", "--no-netns", "--python-only"]
if let unknown = arguments.first(where: { !known.contains($0) }) {
    fputs("distr-bench: unknown option '\(unknown)'\n\(usage)\n", stderr)
    exit(64)
}
exit(
    BenchCommand.run(
        json: arguments.contains("--json"), quick: arguments.contains("--quick"), namespaces: !arguments.contains("--no-netns"),
        pythonOnly: arguments.contains("--python-only")))
