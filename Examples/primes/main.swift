@preconcurrency import Glibc
import DistrCore
import Synchronization

// Is N prime? Trial division by 6k±1 up to √N, split across ranks in interleaved blocks.
// The rank that finds a divisor tells the others, which stop early.
let usage = "usage: primes [N]  (N: a whole number, 2 or more, below 2^64; default 998244359987710471)"

/// One line on stderr and exit 64, for arguments that make no sense.
func usageError(_ problem: String) -> Never {
    fputs("primes: \(problem); \(usage)\n", stderr)
    exit(64)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("-h") || arguments.contains("--help") {
    print(usage)
    exit(0)
}
guard arguments.count <= 1 else { usageError("expected at most one argument, got \(arguments.count)") }
let number =
    arguments.first.map { text in
        // 0 and 1 are neither prime nor composite: there is nothing to decide.
        guard let value = UInt64(text), value >= 2 else { usageError("N must be a whole number, 2 or more, not '\(text)'") }
        return value
    } ?? 1_000_000_007 * 998_244_353
let foundTag = 7

final class StopFlag: Sendable {
    let stop = Atomic<Bool>(false)
}

/// The largest r with r² ≤ n (r² computed without overflow: n may be close to 2^64).
func integerSquareRoot(_ n: UInt64) -> UInt64 {
    func squareFits(_ r: UInt64) -> Bool {
        let (square, overflow) = r.multipliedReportingOverflow(by: r)
        return !overflow && square <= n
    }
    var root = UInt64(Double(n).squareRoot())
    while !squareFits(root) { root -= 1 }
    while squareFits(root + 1) { root += 1 }
    return root
}

await Node.run { node in
    let flag = StopFlag()
    // Listens for another rank's find while this one computes.
    let watcher = Task {
        let message = try await node.recvMessage(UInt64.self, from: .any, tag: foundTag)
        flag.stop.store(true, ordering: .relaxed)
        return message.source
    }
    var divisor: UInt64 = 0
    var checked: UInt64 = 0
    if number % 2 == 0 || number % 3 == 0 {
        // 2 and 3 are prime; other multiples of them are not.
        divisor = number <= 3 ? 0 : (number % 2 == 0 ? 2 : 3)
    } else {
        // Candidates 6i-1 and 6i+1 for i = 1, 2, ..., up to √N (a divisor above √N has a partner
        // below it, and N itself is no proper divisor); blocks of i go round-robin to the ranks.
        let root = integerSquareRoot(number)
        let lastIndex = (root + 1) / 6 + 1
        let block: UInt64 = 20_000
        var start = 1 + UInt64(node.id) * block
        search: while start <= lastIndex {
            if flag.stop.load(ordering: .relaxed) { break }
            for i in start..<min(start + block, lastIndex + 1) {
                let k = 6 * i - 1
                if k > root { break search }
                checked += 1
                if number % k == 0 {
                    divisor = k
                    break search
                }
                if k + 2 > root { break search }
                checked += 1
                if number % (k + 2) == 0 {
                    divisor = k + 2
                    break search
                }
            }
            start += block * UInt64(node.count)
            await Task.yield()
        }
    }
    if divisor != 0 {
        for rank in 0..<node.count where rank != node.id { try await node.send(divisor, to: rank, tag: foundTag) }
    }
    let stoppedEarly = flag.stop.load(ordering: .relaxed) && divisor == 0
    // The smallest divisor any rank found (0: none).
    let smallest = try await node.allReduce(divisor == 0 ? UInt64.max : divisor, .min)
    watcher.cancel()
    let line = "rank \(node.id): checked \(checked) candidates" + (stoppedEarly ? ", stopped early" : "")
    let lines = try await node.gather(line, root: 0)
    if let lines {
        for line in lines { print(line) }
        if smallest == UInt64.max {
            print("\(number) is prime")
        } else {
            print("\(number) is composite: \(smallest) × \(number / smallest)")
        }
    }
}
