import DistrCore

// The Swift half of a job whose even ranks run Swift and odd ranks Python (mixed.py, started by
// run.sh): point-to-point messages and collectives between the two languages.
await Node.run { node in
    let next = (node.id + 1) % node.count
    let prev = (node.id + node.count - 1) % node.count
    // Point to point: a greeting around the ring, in whatever language the neighbour speaks.
    try await node.send("hello from rank \(node.id) (Swift)", to: next)
    let greeting = try await node.recv(String.self, from: prev)
    print("rank \(node.id) (Swift) got: \(greeting)")
    // Collectives, called by every rank in the same order.
    let languages = try await node.allGather("Swift")
    let settings = try await node.broadcast(nil as [String: Int]?, root: 1 % node.count)
    let samples = (0..<settings["samples", default: 0]).map { Double($0 + node.id) }
    let totals = try await node.allReduce(samples, .sum)
    let counts = try await node.gather(samples.count, root: 0)
    if let counts {
        print("languages: \(languages.joined(separator: " "))")
        print("settings from rank 1: \(settings.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ", "))")
        print("element-wise totals: \(totals), samples per rank: \(counts)")
    }
}
