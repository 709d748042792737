@preconcurrency import Glibc
import DistrCore

// distr-bench: distr's costs beside a plain baseline measured in the same run, with their ratios,
// targets and whether each is met. `--json` prints one JSON object instead of the table.
// `--rank MODE` and `--write-lines BYTES` are what the benchmark's own ranks run.
let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "--rank": await RankBench.run(Array(arguments.dropFirst()))
case "--write-lines": exit(LineWriter.run(Array(arguments.dropFirst())))
default: exit(BenchCommand.main(arguments))
}
