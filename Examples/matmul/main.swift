@preconcurrency import Glibc
import DistrCore

// C = A × B with a 2-D block decomposition that works for any number of ranks: the ranks form
// a grid of rows × columns (the factorisation of the rank count closest to square; a prime count
// gives 1 × p), and rank (r, c) computes the block of C for row band r and column band c.
// Rank 0 makes A and B, sends each rank its bands, gathers the blocks and checks them against a
// product computed locally.
let usage = "usage: matmul [M [K [N]]]  (an M×K times K×N product; each 1...4096; default 240 200 220)"

/// One line on stderr and exit 64, for arguments that make no sense.
func usageError(_ problem: String) -> Never {
    fputs("matmul: \(problem); \(usage)\n", stderr)
    exit(64)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("-h") || arguments.contains("--help") {
    print(usage)
    exit(0)
}
guard arguments.count <= 3 else { usageError("expected at most three sizes, got \(arguments.count)") }
let sizes = zip(["M", "K", "N"], arguments).map { name, text in
    guard let value = Int(text), (1...4096).contains(value) else { usageError("\(name) must be a whole number from 1 to 4096, not '\(text)'") }
    return value
}
let m = sizes.count > 0 ? sizes[0] : 240
let k = sizes.count > 1 ? sizes[1] : 200
let n = sizes.count > 2 ? sizes[2] : 220

struct Work: Codable, Sendable {
    var rows: Range<Int>
    var columns: Range<Int>
    var a: [Double]  // rows × k, row-major
    var b: [Double]  // k × columns, row-major
}

struct Block: Codable, Sendable {
    var rows: Range<Int>
    var columns: Range<Int>
    var values: [Double]
}

func grid(for count: Int) -> (rows: Int, columns: Int) {
    var rows = 1
    var candidate = 1
    while candidate * candidate <= count {
        if count % candidate == 0 { rows = candidate }
        candidate += 1
    }
    return (rows, count / rows)
}

func band(_ index: Int, of parts: Int, size: Int) -> Range<Int> { (index * size / parts)..<((index + 1) * size / parts) }

func multiply(_ a: [Double], _ b: [Double], rows: Int, inner: Int, columns: Int) -> [Double] {
    var c = [Double](repeating: 0, count: rows * columns)
    for i in 0..<rows {
        for p in 0..<inner {
            let x = a[i * inner + p]
            for j in 0..<columns { c[i * columns + j] += x * b[p * columns + j] }
        }
    }
    return c
}

await Node.run { node in
    let (gridRows, gridColumns) = grid(for: node.count)
    var works: [Work]?
    var a: [Double] = []
    var b: [Double] = []
    if node.id == 0 {
        // Deterministic inputs.
        a = (0..<(m * k)).map { Double(($0 * 7 + 3) % 11) - 5 }
        b = (0..<(k * n)).map { Double(($0 * 5 + 1) % 13) - 6 }
        works = (0..<node.count).map { rank in
            let rows = band(rank / gridColumns, of: gridRows, size: m)
            let columns = band(rank % gridColumns, of: gridColumns, size: n)
            let aBand = Array(a[(rows.lowerBound * k)..<(rows.upperBound * k)])
            var bBand: [Double] = []
            bBand.reserveCapacity(k * columns.count)
            for p in 0..<k { bBand += b[(p * n + columns.lowerBound)..<(p * n + columns.upperBound)] }
            return Work(rows: rows, columns: columns, a: aBand, b: bBand)
        }
    }
    let work = try await node.scatter(works, root: 0)
    let block = Block(
        rows: work.rows, columns: work.columns,
        values: multiply(work.a, work.b, rows: work.rows.count, inner: k, columns: work.columns.count))
    guard let blocks = try await node.gather(block, root: 0) else { return }
    var c = [Double](repeating: 0, count: m * n)
    for block in blocks {
        for (i, row) in block.rows.enumerated() {
            for (j, column) in block.columns.enumerated() { c[row * n + column] = block.values[i * block.columns.count + j] }
        }
    }
    let expected = multiply(a, b, rows: m, inner: k, columns: n)
    let maxError = zip(c, expected).map { abs($0 - $1) }.max() ?? 0
    print(
        "matmul \(m)x\(k) · \(k)x\(n) on \(node.count) ranks (grid \(gridRows)x\(gridColumns)): max error \(maxError), \(maxError == 0 ? "ok" : "MISMATCH")"
    )
    if maxError != 0 { throw NodeError.badArgument("result differs from the local product") }
}
