@preconcurrency import Glibc
import DistrCore

// distr-bench: launch and messaging costs of distr beside a plain baseline measured in the same
// run, with their ratios. `--json` prints one JSON object instead of the table.
let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--rank" {
    await RankBench.run(Array(arguments.dropFirst()))
}
if arguments.contains("-h") || arguments.contains("--help") {
    print("usage: distr-bench [--json] [--quick] [--no-netns]")
    exit(0)
}
exit(BenchCommand.run(json: arguments.contains("--json"), quick: arguments.contains("--quick"), namespaces: !arguments.contains("--no-netns")))
