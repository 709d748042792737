import DistrCore
import Synchronization

// Is N prime? Trial division by 6k±1 up to √N, split across ranks in interleaved blocks.
// The rank that finds a divisor tells the others, which stop early.
let number = CommandLine.arguments.dropFirst().first.flatMap { UInt64($0) } ?? 1_000_000_007 * 998_244_353
let foundTag = 7

final class StopFlag: Sendable {
    let stop = Atomic<Bool>(false)
}

func integerSquareRoot(_ n: UInt64) -> UInt64 {
    var root = UInt64(Double(n).squareRoot())
    while root * root > n { root -= 1 }
    while (root + 1) * (root + 1) <= n { root += 1 }
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
    if number < 4 || number % 2 == 0 || number % 3 == 0 {
        divisor = number < 4 ? 0 : (number % 2 == 0 ? 2 : 3)
    } else {
        // Candidates 6i-1 and 6i+1 for i = 1, 2, ...; blocks of i go round-robin to the ranks.
        let lastIndex = (integerSquareRoot(number) + 1) / 6 + 1
        let block: UInt64 = 20_000
        var start = 1 + UInt64(node.id) * block
        search: while start <= lastIndex {
            if flag.stop.load(ordering: .relaxed) { break }
            for i in start..<min(start + block, lastIndex + 1) {
                checked += 2
                let k = 6 * i - 1
                if number % k == 0 || number % (k + 2) == 0 {
                    divisor = number % k == 0 ? k : k + 2
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
