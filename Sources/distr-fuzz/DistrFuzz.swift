@preconcurrency import Glibc

/// The entry point of a build without libFuzzer (`swift build`): replays inputs through a target.
///
/// In a build with `-sanitize=fuzzer` libFuzzer's own `main` is the entry point and this one is
/// renamed away (`Fuzz/run` passes `-entry-point-function-name`); libFuzzer then calls the
/// hooks in `LibFuzzerHooks.swift`.
@main enum DistrFuzz {
    static func main() {
        exit(FuzzCommand.main(Array(CommandLine.arguments.dropFirst()), underLibFuzzer: false))
    }
}
