@preconcurrency import Glibc
import DistrCore
import Synchronization

/// The target libFuzzer drives; chosen once in `LLVMFuzzerInitialize`, before any input runs.
let selectedTarget = Mutex<FuzzTarget?>(nil)

/// libFuzzer calls this once with its command line, before it parses its flags. The first
/// argument may name the target (it is removed, and put in `DISTR_FUZZ_TARGET` for the child
/// processes of `-fork`/`-jobs`); `--list`, `--write-seeds` and `--replay-all` run here and exit.
@_cdecl("LLVMFuzzerInitialize")
func fuzzerInitialize(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> Int32 {
    guard let vector = argv.pointee else { return 0 }
    let arguments = (1..<Int(argc.pointee)).map { vector[$0].map { String(cString: $0) } ?? "" }
    if let first = arguments.first, first.hasPrefix("--") || first == "-h" {
        exit(FuzzCommand.main(arguments, underLibFuzzer: true))
    }
    var name = getenv("DISTR_FUZZ_TARGET").map { String(cString: $0) }
    if let first = arguments.first, FuzzTarget.named(first) != nil {
        name = first
        setenv("DISTR_FUZZ_TARGET", first, 1)
        // Drop argv[1]: libFuzzer copies the arguments only after this returns.
        for index in 1..<Int(argc.pointee) { vector[index] = vector[index + 1] }
        argc.pointee -= 1
    }
    guard let name, let target = FuzzTarget.named(name) else {
        FuzzCommand.printUsage(to: stderr, problem: "name a target as the first argument or in DISTR_FUZZ_TARGET")
        exit(64)
    }
    selectedTarget.withLock { $0 = target }
    return 0
}

/// libFuzzer calls this for every input.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    selectedTarget.withLock { $0 }?.run(bytes)
    return 0
}
