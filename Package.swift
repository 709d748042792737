// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]
/// distr-worker carries the Swift runtime inside: no dynamic loading of a dozen Swift libraries at
/// every start (about 1.5 ms of CPU, a quarter of `distr-master exec true` when the master was
/// linked the same way), and a worker binary that runs on a node without the toolchain. See
/// docs/performance.md. It also links libstdc++ and the unwinder statically (Linker/static-cxx:
/// linker scripts that stand in for the shared libraries): ~0.4 ms of CPU less at every start, and
/// a node needs only glibc.
/// Every linker setting here is for release builds only: the test bundle links the executables'
/// modules with their linker settings, and the toolchain has no static Testing or XCTest libraries.
let selfContained: [LinkerSetting] = [
    .unsafeFlags(
        ["-static-stdlib", "-L", Context.packageDirectory + "/Linker/static-cxx"], .when(platforms: [.linux], configuration: .release))
]
/// distr-master, a short-lived client started for every job, is a static executable linked by
/// lld: no dynamic loader, no libraries to map and relocate, no symbols looked up at start, and
/// (as before, when it was linked `-no-pie`) no relative relocations: its start takes about 0.6 ms
/// of CPU instead of 0.9-1.1, and an `exec true` on 4 workers 0.88-0.90x the time, alternating
/// with the dynamic build (docs/performance.md, "Session 31"). Linked by gold, a static master
/// took 0.69-0.95 ms and launches 0.98-0.99x the time, and gold prints glibc's notes on
/// `getaddrinfo` and `dlopen` in static programs as warnings. Host names are resolved by the files
/// and dns services inside glibc (other NSS modules would be loaded from the glibc the master was
/// built with). Its stack and heap are still placed at random. distr-worker, a network daemon, keeps PIE (a static PIE
/// of the Swift runtime does not start).
let staticExecutable: [LinkerSetting] = [
    .unsafeFlags(["-static-executable", "-use-ld=lld"], .when(platforms: [.linux], configuration: .release))
]
/// distr-worker does not export its symbols (SwiftPM links executables with `--export-dynamic`,
/// for tests that import them): the Swift runtime's backtracer looks its own path up at every start
/// with `dladdr`, which walks the exported symbols one by one (3,376 of them), and the loader reads
/// their tables. distr-master's start, when it was linked the same way: 1.48 -> 1.21 ms
/// (docs/performance.md, "Session 30"). The static master has no dynamic symbols at all.
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
            linkerSettings: staticExecutable),
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
