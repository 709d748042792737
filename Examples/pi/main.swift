import DistrCore

// pi by numerical integration: the integral of 4/(1+x²) over [0, 1], midpoint rule.
// Each rank sums its share of the intervals; the partial sums are reduced to rank 0.
let intervals = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 10_000_000

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
