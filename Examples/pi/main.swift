@preconcurrency import Glibc
import DistrCore

// pi by numerical integration: the integral of 4/(1+x²) over [0, 1], midpoint rule.
// Each rank sums its share of the intervals; the partial sums are reduced to rank 0.
let usage = "usage: pi [STEPS]  (STEPS: intervals, a whole number 1 or more; default 10000000)"

/// One line on stderr and exit 64, for arguments that make no sense.
func usageError(_ problem: String) -> Never {
    fputs("pi: \(problem); \(usage)\n", stderr)
    exit(64)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("-h") || arguments.contains("--help") {
    print(usage)
    exit(0)
}
guard arguments.count <= 1 else { usageError("expected at most one argument, got \(arguments.count)") }
let intervals =
    arguments.first.map { text in
        guard let value = Int(text), value >= 1 else { usageError("STEPS must be a whole number, 1 or more, not '\(text)'") }
        return value
    } ?? 10_000_000

await Node.run { node in
    let width = 1.0 / Double(intervals)
    var partial = 0.0
    var i = node.id
    while i < intervals {
        let x = (Double(i) + 0.5) * width
        partial += 4.0 / (1.0 + x * x)
        i += node.count
    }
    if let total = try await node.reduce(partial * width, .sum, root: 0) {
        let error = abs(total - Double.pi)
        print("pi ≈ \(total) with \(intervals) intervals on \(node.count) ranks (error \(error))")
    }
}
