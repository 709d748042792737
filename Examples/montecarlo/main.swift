@preconcurrency import Glibc
import DistrCore

// A Monte Carlo estimate of pi (the fraction of random points of the unit square inside the
// quarter circle, times 4) with a user-defined reducer: each rank summarises its samples as
// count, mean and sum of squared deviations, and the summaries merge exactly (Chan et al.).
// Reproducible: the same --seed and rank count give the same answer.
let usage = "usage: montecarlo [--samples N] [--seed S]  (N: 1 or more, default 2000000; S: 0 to 2^64-1, default 42)"

/// One line on stderr and exit 64, for arguments that make no sense.
func usageError(_ problem: String) -> Never {
    fputs("montecarlo: \(problem); \(usage)\n", stderr)
    exit(64)
}

var samples = 2_000_000
var seed: UInt64 = 42
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    // `--name value` or `--name=value`.
    let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
    let name = parts.first ?? argument
    if name == "-h" || name == "--help" {
        print(usage)
        exit(0)
    }
    guard name == "--seed" || name == "--samples" else { usageError("unknown argument '\(argument)'") }
    guard let text = parts.count == 2 ? parts[1] : arguments.popFirst() else { usageError("\(name) needs a value") }
    if name == "--seed" {
        guard let value = UInt64(text) else { usageError("--seed must be a whole number from 0 to 2^64-1, not '\(text)'") }
        seed = value
    } else {
        guard let value = Int(text), value >= 1 else { usageError("--samples must be a whole number, 1 or more, not '\(text)'") }
        samples = value
    }
}

struct Summary: Codable, Sendable {
    var count: Double = 0
    var mean: Double = 0
    var m2: Double = 0

    mutating func add(_ x: Double) {
        count += 1
        let delta = x - mean
        mean += delta / count
        m2 += delta * (x - mean)
    }

    static let merge = Reduction<Summary> { a, b in
        guard a.count > 0 else { return b }
        guard b.count > 0 else { return a }
        let count = a.count + b.count
        let delta = b.mean - a.mean
        return Summary(count: count, mean: a.mean + delta * b.count / count, m2: a.m2 + b.m2 + delta * delta * a.count * b.count / count)
    }

    var variance: Double { count > 1 ? m2 / (count - 1) : 0 }
    var standardError: Double { (variance / count).squareRoot() }
}

/// SplitMix64: small, fast, and the same on every platform.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

await Node.run { node in
    var generator = SplitMix64(state: seed &+ UInt64(node.id) &* 0x1000_0000_01B3)
    var summary = Summary()
    let share = samples / node.count + (node.id < samples % node.count ? 1 : 0)
    for _ in 0..<share {
        let x = Double.random(in: 0..<1, using: &generator)
        let y = Double.random(in: 0..<1, using: &generator)
        summary.add(x * x + y * y < 1 ? 4 : 0)
    }
    if let total = try await node.reduce(summary, Summary.merge, root: 0) {
        print(
            "pi ≈ \(total.mean) ± \(total.standardError) (standard error; variance \(total.variance), \(Int(total.count)) samples, seed \(seed), \(node.count) ranks)"
        )
    }
}
