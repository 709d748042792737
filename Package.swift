// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]
/// distr-master and distr-worker carry the Swift runtime inside: no dynamic loading of a dozen
/// Swift libraries at every start (about 1.5 ms of CPU, a quarter of `distr-master exec true`),
/// and a worker binary that runs on a node without the toolchain. See docs/performance.md.
/// Release builds only: the test bundle links the executables' modules with their linker settings,
/// and the toolchain has no static Testing or XCTest libraries.
/// They also link libstdc++ and the unwinder statically (Linker/static-cxx: linker scripts that stand
/// in for the shared libraries): ~0.4 ms of CPU less at every start, and a node needs only glibc.
let selfContained: [LinkerSetting] = [
    .unsafeFlags(
        ["-static-stdlib", "-L", Context.packageDirectory + "/Linker/static-cxx"], .when(platforms: [.linux], configuration: .release))
]
/// distr-master, a short-lived client started for every job, is also linked position-dependent:
/// its ~29,000 relative relocations, and the copy-on-write faults of the ~90 data pages they
/// write, cost ~0.5 ms of every start on its way to connect (docs/performance.md). Its stack,
/// heap and libraries are still placed at random. distr-worker, a network daemon, keeps PIE.
let positionDependent: [LinkerSetting] = [.unsafeFlags(["-Xclang-linker", "-no-pie"], .when(platforms: [.linux], configuration: .release))]
/// Neither daemon exports its symbols (SwiftPM links executables with `--export-dynamic`, for
/// tests that import them): the Swift runtime's backtracer looks its own path up at every start
/// with `dladdr`, which walks the exported symbols one by one (3,376 of them), and the loader
/// reads their tables. distr-master's start: 1.48 -> 1.21 ms (docs/performance.md, "Session 30").
let unexported: [LinkerSetting] = [.unsafeFlags(["-Xlinker", "--no-export-dynamic"], .when(platforms: [.linux], configuration: .release))]

/// Release builds of the library and both daemons reach the metadata of the generic types they use
/// (`[String]`, `[Int: Connection]`, ...) through accessor functions instead of mangled names, which
/// the runtime demangles, and checks conformances for, at the first use of each call site: about
/// 0.4 ms of CPU at every start of `distr-master`, all of it before its first `connect`
/// (docs/performance.md, "Session 23").
let metadataAccessors: [SwiftSetting] = [
    .unsafeFlags(["-Xfrontend", "-disable-concrete-type-metadata-mangled-name-accessors"], .when(configuration: .release))
]

let package = Package(
    name: "distr",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "DistrCore", targets: ["DistrCore"]),
        .executable(name: "distr-worker", targets: ["distr-worker"]),
        .executable(name: "distr-master", targets: ["distr-master"]),
        .executable(name: "distr-bench", targets: ["distr-bench"]),
    ],
    targets: [
        .target(name: "CDistrSys"),
        .target(name: "DistrCore", dependencies: ["CDistrSys"], swiftSettings: strict + metadataAccessors),
        .executableTarget(
            name: "distr-worker", dependencies: ["DistrCore"], swiftSettings: strict + metadataAccessors,
            linkerSettings: selfContained + unexported),
        .executableTarget(
            name: "distr-master", dependencies: ["DistrCore"], swiftSettings: strict + metadataAccessors,
            linkerSettings: selfContained + positionDependent + unexported),
        .executableTarget(name: "distr-bench", dependencies: ["DistrCore"], swiftSettings: strict),
        .executableTarget(name: "distr-fuzz", dependencies: ["DistrCore"], swiftSettings: strict),
        .executableTarget(name: "ring", dependencies: ["DistrCore"], path: "Examples/ring", swiftSettings: strict),
        .executableTarget(name: "pi", dependencies: ["DistrCore"], path: "Examples/pi", swiftSettings: strict),
        .executableTarget(name: "primes", dependencies: ["DistrCore"], path: "Examples/primes", swiftSettings: strict),
        .executableTarget(name: "matmul", dependencies: ["DistrCore"], path: "Examples/matmul", swiftSettings: strict),
        .executableTarget(name: "montecarlo", dependencies: ["DistrCore"], path: "Examples/montecarlo", swiftSettings: strict),
        .executableTarget(
            name: "mixed", dependencies: ["DistrCore"], path: "Examples/python/mixed", exclude: ["mixed.py", "run.sh"],
            swiftSettings: strict),
        .executableTarget(
            name: "distr-check", dependencies: ["DistrCore"], path: "Tests/Programs/distr-check", swiftSettings: strict),
        .testTarget(name: "DistrCoreTests", dependencies: ["DistrCore"], swiftSettings: strict),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "DistrCore", "distr-worker", "distr-master", "distr-bench", "ring", "pi", "primes", "matmul", "montecarlo", "mixed", "distr-check",
            ],
            swiftSettings: strict),
    ]
)
