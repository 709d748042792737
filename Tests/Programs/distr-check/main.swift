@preconcurrency import Glibc
import DistrCore
import Foundation

// Scenarios for the end-to-end tests of the message library. Each prints "ok <what>" lines
// and exits 0, or prints what went wrong and exits 1.

let scenario = CommandLine.arguments.dropFirst().first ?? ""
let argument = CommandLine.arguments.dropFirst(2).first.flatMap { Int($0) } ?? 0

if scenario == "not-launched" {
    do {
        _ = try await Node.join()
        print("joined without distr?")
        exit(1)
    } catch {
        print("\(error)")
        exit(0)
    }
}

await Node.run { node in
    let next = (node.id + 1) % node.count
    let prev = (node.id + node.count - 1) % node.count
    switch scenario {
    case "api":
        // Send to self.
        try await node.send("to myself", to: node.id, tag: 3)
        try expect(try await node.recv(String.self, from: node.id, tag: 3) == "to myself", "send to self")
        // Structured values, optionals, nested containers.
        let point = Point(x: 1.5, label: "p\(node.id)", note: node.id % 2 == 0 ? nil : "odd", tags: [1, 2, node.id], nested: ["a": node.id])
        try await node.send(point, to: next, tag: 1)
        let got = try await node.recvMessage(Point.self, from: prev, tag: 1)
        try expect(got.value.label == "p\(prev)" && got.source == prev && got.tag == 1, "struct round trip with source and tag")
        try expect(got.value.note == (prev % 2 == 0 ? nil : "odd") && got.value.nested == ["a": prev], "optional and dictionary fields")
        // Numeric arrays of several types, and raw bytes.
        try await node.send([Double](repeating: Double(node.id), count: 1000), to: next, tag: 2)
        try await node.send([Int32](arrayLiteral: 1, -2, 3), to: next, tag: 2)
        try await node.send(bytes: [0, 255, 7], to: next, tag: 2)
        try expect(try await node.recv([Double].self, from: prev, tag: 2) == [Double](repeating: Double(prev), count: 1000), "[Double]")
        try expect(try await node.recv([Int32].self, from: prev, tag: 2) == [1, -2, 3], "[Int32]")
        try expect(try await node.recvBytes(from: prev, tag: 2).value == [0, 255, 7], "raw bytes")
        // Order between one pair of ranks.
        for i in 0..<200 { try await node.send(i, to: next, tag: 4) }
        var received: [Int] = []
        for _ in 0..<200 { received.append(try await node.recv(Int.self, from: prev, tag: 4)) }
        try expect(received == Array(0..<200), "messages arrive in the order sent")
        // .any source and .any tag.
        try await node.send(node.id, to: 0, tag: 5)
        if node.id == 0 {
            var sources = Set<Int>()
            for _ in 0..<node.count {
                let message = try await node.recvMessage(Int.self, from: .any, tag: 5)
                try expect(message.value == message.source && message.tag == 5, ".any gives the real source and tag")
                sources.insert(message.source)
            }
            try expect(sources == Set(0..<node.count), ".any receives from every rank")
        }
        try await node.send(42, to: node.id, tag: 11)
        let anyTag = try await node.recvMessage(Int.self, from: node.id, tag: .any)
        try expect(anyTag.value == 42 && anyTag.tag == 11, ".any tag gives the real tag")
        // Nonblocking style with async let: receive while sending.
        async let incoming = node.recv(String.self, from: prev, tag: 6)
        try await node.send("overlap", to: next, tag: 6)
        try expect(try await incoming == "overlap", "async let overlap")
        // Errors.
        try await expectError("bad rank", contains: "rank \(node.count) does not exist") { try await node.send(1, to: node.count) }
        try await expectError("bad source", contains: "rank -1 does not exist") { _ = try await node.recv(Int.self, from: -1) }
        try await expectError("bad tag", contains: "tag -5 is not allowed") { try await node.send(1, to: next, tag: -5) }
        try await node.send("a string", to: next, tag: 7)
        try await expectError("type mismatch", contains: "is not a Int") { _ = try await node.recv(Int.self, from: prev, tag: 7) }
        try await node.send([1.0, 2.0], to: next, tag: 8)
        try await expectError("array type mismatch", contains: "is not a Array<Float>") { _ = try await node.recv([Float].self, from: prev, tag: 8) }
        try await node.barrier()
        say("ok api")

    case "order":
        // Bursts of small messages while the receiver alternates between reading the socket
        // itself and sleeping (so the progress thread reads): order must hold throughout.
        let total = 20_000
        if node.id == 0 {
            for i in 0..<total { try await node.send(i, to: 1, tag: 1) }
        } else if node.id == 1 {
            for i in 0..<total {
                if i % 1000 == 0 { usleep(2000) }
                let value = try await node.recv(Int.self, from: 0, tag: 1)
                try expect(value == i, "message \(i) arrived as \(value)")
            }
        }
        try await node.barrier()
        say("ok order")

    case "one-connection":
        // Every rank sends to every other at the same moment (as collectives begin), in rounds,
        // and checks the order of what it gets; then each pair of ranks on different workers
        // must share one TCP connection (`argument`: how many ranks are on other workers).
        let rounds = 300
        for round in 0..<rounds {
            for peer in 0..<node.count where peer != node.id { try await node.send(round * node.count + node.id, to: peer, tag: 7) }
            for peer in 0..<node.count where peer != node.id {
                let value = try await node.recv(Int.self, from: peer, tag: 7)
                try expect(value == round * node.count + peer, "round \(round) from rank \(peer): \(value)")
            }
        }
        try await node.barrier()
        // Connections given up close once both sides saw their ends: wait for that (bounded).
        let deadline = Date().addingTimeInterval(20)
        var connections = tcpConnections()
        while connections != argument && Date() < deadline {
            usleep(2000)
            connections = tcpConnections()
        }
        try expect(connections == argument, "\(connections) TCP connections for \(argument) ranks on other workers")
        try await node.barrier()
        say("ok one-connection")

    case "busy-receiver":
        // Rank 1 takes a few messages by reading its socket itself (which silences the progress
        // thread's watch on it), then is busy without receiving while rank 0 sends more than
        // the socket buffers hold: that send must still complete (the progress thread reads it).
        let job = ProcessInfo.processInfo.environment["DISTR_JOB_ID"] ?? "job"
        let marker = NSTemporaryDirectory() + "/distr-check-\(job)-sent"
        let big = [UInt8](repeating: 9, count: 32 << 20)
        if node.id == 0 {
            for i in 0..<50 {
                try await node.send(i, to: 1)
                try expect(try await node.recv(Int.self, from: 1) == i, "echo \(i)")
            }
            try await node.send(big, to: 1)
            try expect(FileManager.default.createFile(atPath: marker, contents: nil), "cannot create \(marker)")
        } else if node.id == 1 {
            for _ in 0..<50 { try await node.send(try await node.recv(Int.self, from: 0), to: 0) }
            // Busy elsewhere (no receive) until rank 0's send has returned.
            while !FileManager.default.fileExists(atPath: marker) { usleep(1000) }
            unlink(marker)
            try expect(try await node.recv([UInt8].self, from: 0) == big, "the large message")
        }
        try await node.barrier()
        say("ok busy-receiver")

    case "python-peer":
        // Rank 0 in Swift, rank 1 in Python (Tests/Programs/python-peer.py): every Swift-typed
        // value both ways, a pickled value refused clearly, and a malformed header last.
        if node.id == 0 {
            try await node.send("hello from swift", to: 1)
            try await node.send([1.5, 2.5], to: 1)
            try await node.send(42, to: 1, tag: 3)
            try await node.send(true, to: 1)
            try await node.send(Float(0.5), to: 1)
            try await node.send([Int32(1), -2], to: 1)
            try await node.send(["a": 1, "b": 2], to: 1)
            try await node.send([[1, 2], [3]], to: 1)
            try await node.send(["x", "y"], to: 1)
            try await node.send([true, false], to: 1)
            try await node.send([1: "one"], to: 1)
            try await node.send(["k": [1.5]], to: 1)
            try await node.send(bytes: [0, 255, 7], to: 1)
            try await node.send([Int](), to: 1)
            try await node.send(Labelled(count: 3, name: "p", weights: [0.5]), to: 1)
            try await node.send(Labelled(count: 4, name: "q", weights: []), to: 1)
            try expect(try await node.recv(String.self, from: 1) == "hello from python", "string from python")
            try expect(try await node.recv([Int32].self, from: 1) == [1, -2, 3], "int32 array from python")
            try expect(try await node.recv(Double.self, from: 1, tag: 5) == 0.25, "double from python")
            try expect(try await node.recv([String].self, from: 1) == ["a", "b"], "string list from python")
            try expect(try await node.recv(Int.self, from: 1) == -7, "int from python")
            try expect(try await node.recv(Bool.self, from: 1) == true, "bool from python")
            try expect(try await node.recv([Int].self, from: 1) == [1, 2, 3], "int list from python")
            try expect(try await node.recv([Double].self, from: 1) == [1.5, -0.5], "double list from python")
            try expect(try await node.recv([String: Int].self, from: 1) == ["a": 1, "b": 2], "dictionary from python")
            try expect(try await node.recv([Int: String].self, from: 1) == [1: "one"], "int-keyed dictionary from python")
            try expect(try await node.recv([[Int]].self, from: 1) == [[1, 2], [3]], "nested lists from python")
            try expect(try await node.recv([String: [Double]].self, from: 1) == ["k": [0.5]], "dictionary of lists from python")
            try expect(try await node.recv([Bool].self, from: 1) == [true, false], "bool list from python")
            try expect(try await node.recvBytes(from: 1).value == [1, 2, 3], "bytes from python")
            try expect(try await node.recv([Int].self, from: 1).isEmpty, "empty list from python as [Int]")
            try expect(try await node.recv([String].self, from: 1).isEmpty, "empty list from python as [String]")
            try expect(try await node.recv([Double].self, from: 1) == [0, 1, 2], "numpy or array.array from python")
            try await expectError(
                "pickled tuple", contains: "rank 1 sent a pickled Python object (tag 0); a Swift rank receives str, int, float, bool"
            ) { _ = try await node.recv(String.self, from: 1) }
            try expect(try await node.recv(String.self, from: 1) == "after the pickle", "the connection survives a pickle")
            try await expectError("malformed header", contains: "rank 1 sent a malformed message header (unknown encoding 9)") {
                _ = try await node.recv(String.self, from: 1)
            }
            try await node.send("done", to: 1, tag: 9)
            say("ok python-peer")
        }

    case "python-collectives":
        // Even ranks in Swift, odd ranks in Python (Tests/Programs/python-peer.py collectives):
        // the same collectives in the same order, with the values both sides compute.
        let n = node.count
        try await node.barrier()
        try expect(try await node.broadcast(nil as Int?, root: 1 % n) == 7, "broadcast of an Int from a Python root")
        try expect(try await node.broadcast(node.id == 0 ? [0.5, 1.5] : nil, root: 0) == [0.5, 1.5], "broadcast of [Double]")
        let sum = try await node.reduce(node.id + 1, .sum, root: 0)
        try expect(node.id == 0 ? sum == n * (n + 1) / 2 : sum == nil, "reduce of Int")
        let sums = try await node.reduce([Double(node.id), 1], .sum, root: 1 % n)
        try expect(node.id == 1 % n ? sums == [Double(n * (n - 1) / 2), Double(n)] : sums == nil, "reduce of [Double] at a Python root")
        try expect(try await node.allReduce(node.id, .max) == n - 1, "allReduce max")
        let ring = try await node.allReduce([Double](repeating: Double(node.id + 1), count: 4096 * n + 3), .sum)
        try expect(ring == [Double](repeating: Double(n * (n + 1) / 2), count: 4096 * n + 3), "ring allReduce")
        try expect(try await node.allReduce([node.id, -node.id], .min) == [0, -(n - 1)], "allReduce min of [Int]")
        try await expectSameSumEverywhere(node, length: 4096 * n + 5)
        let words = try await node.gather("r\(node.id)", root: 1 % n)
        try expect(node.id == 1 % n ? words == (0..<n).map { "r\($0)" } : words == nil, "gather of String at a Python root")
        let ids = try await node.gather(node.id, root: 0)
        try expect(node.id == 0 ? ids == Array(0..<n) : ids == nil, "gather of Int")
        try expect(try await node.allGather(Double(node.id) * 0.5) == (0..<n).map { Double($0) * 0.5 }, "allGather of Double")
        try expect(try await node.allGather(["x\(node.id)"]) == (0..<n).map { ["x\($0)"] }, "allGather of [String]")
        let piece = try await node.scatter(node.id == 0 ? (0..<n).map { "s\($0)" } : nil, root: 0)
        try expect(piece == "s\(node.id)", "scatter of String")
        try expect(try await node.scatter(nil as [Int]?, root: 1 % n) == node.id * 10, "scatter of Int from a Python root")
        // Large enough to be offered between the Swift ranks of one worker, and sent to Python's.
        let large = (0..<100_000).map { Double($0) * 0.5 }
        try expect(try await node.broadcast(node.id == 0 ? large : nil, root: 0) == large, "broadcast of 100000 doubles")
        try await node.barrier()
        say("ok python-collectives")

    case "collectives":
        let n = node.count
        try await node.barrier()
        let root = n - 1
        let broadcasted = try await node.broadcast(node.id == root ? "from \(root)" : nil, root: root)
        try expect(broadcasted == "from \(root)", "broadcast")
        let sum = try await node.reduce(node.id + 1, .sum, root: 0)
        try expect(node.id == 0 ? sum == n * (n + 1) / 2 : sum == nil, "reduce sum at root 0")
        let maxAtLast = try await node.reduce(Double(node.id), .max, root: root)
        try expect(node.id == root ? maxAtLast == Double(n - 1) : maxAtLast == nil, "reduce max at the last root")
        let product = try await node.allReduce(node.id + 1, .product)
        try expect(product == (1...n).reduce(1, *), "allReduce product")
        let small = try await node.allReduce([Double(node.id), 1, -Double(node.id)], .sum)
        try expect(small == [Double(n * (n - 1) / 2), Double(n), -Double(n * (n - 1) / 2)], "allReduce small array")
        // Large enough for the ring.
        let length = 100_003
        let mine = (0..<length).map { Double($0 % 97) * Double(node.id + 1) }
        let ring = try await node.allReduce(mine, .sum)
        let factor = Double(n * (n + 1) / 2)
        try expect(ring.count == length && ring.indices.allSatisfy { ring[$0] == Double($0 % 97) * factor }, "ring allReduce sum")
        let ringMin = try await node.allReduce((0..<length).map { Int32($0 % 5) - Int32(node.id) }, .min)
        try expect(ringMin.indices.allSatisfy { ringMin[$0] == Int32($0 % 5) - Int32(n - 1) }, "ring allReduce min")
        let ringMax = try await node.allReduce((0..<length).map { Float(($0 + node.id) % 11) }, .max)
        try expect(ringMax.indices.allSatisfy { i in ringMax[i] == (0..<n).map { Float((i + $0) % 11) }.max() }, "ring allReduce max")
        let ringProduct = try await node.allReduce((0..<length).map { Int64($0 % 3 == 0 ? -1 : 1) * Int64(node.id + 1) }, .product)
        try expect(
            ringProduct.indices.allSatisfy { i in ringProduct[i] == (0..<n).reduce(Int64(1)) { $0 * Int64(i % 3 == 0 ? -1 : 1) * Int64($1 + 1) } },
            "ring allReduce product")
        // Rounding depends on the order of the sums: every rank must still get the same bits,
        // through the ring (sizes not divisible by the rank count) and through the tree.
        for size in [length, 4096 * n + 1, 1000] { try await expectSameSumEverywhere(node, length: size) }
        let joined = try await node.allReduce("\(node.id)", .custom { $0 + $1 })
        try expect(joined == (0..<n).map(String.init).joined(), "allReduce custom closure in rank order")
        let gathered = try await node.gather("g\(node.id)", root: 1 % n)
        try expect(node.id == 1 % n ? gathered == (0..<n).map { "g\($0)" } : gathered == nil, "gather at root 1")
        let everyone = try await node.allGather([node.id, node.id * 10])
        try expect(everyone == (0..<n).map { [$0, $0 * 10] }, "allGather")
        let scatterRoot = n / 2
        let piece = try await node.scatter(node.id == scatterRoot ? (0..<n).map { "piece \($0)" } : nil, root: scatterRoot)
        try expect(piece == "piece \(node.id)", "scatter")
        try await expectError("bad root", contains: "does not exist") { _ = try await node.broadcast(1, root: n) }
        say("ok collectives")

    case "single-copy":
        // Large arrays between ranks of one worker go as offers read in place (DISTR_SINGLE_COPY
        // on), as offers refused and then sent (refuse), or as messages (off, sockets, TCP):
        // the same values and the same bits every way.
        let n = node.count
        let root = n - 1
        let big = (0..<300_001).map { Double($0) * 0.25 - Double(root) }
        try expect(try await node.broadcast(node.id == root ? big : nil, root: root) == big, "broadcast of 300001 doubles from the last rank")
        let ints = (0..<70_001).map { Int32(truncatingIfNeeded: $0 &* 7919) }
        try expect(try await node.broadcast(node.id == 0 ? ints : nil, root: 0) == ints, "broadcast of 70001 Int32s")
        // Broadcast offers wherever allReduce does (counted before any allReduce of arrays).
        let offeredByBroadcast = try await node.allReduce(node.offeredArrays, .sum)
        // A root whose offer two or more ranks read offers a copy in a shared segment, kept for
        // the next broadcast: sizes that shrink and grow again, and another element type, all
        // arrive whole. (Every run of this scenario has three or more ranks on rank 0's worker.)
        for length in [300_001, 20_000, 1_000_003] {
            let values = (0..<length).map { Double($0) * 0.5 + Double(length) }
            try expect(try await node.broadcast(node.id == 0 ? values : nil, root: 0) == values, "broadcast of \(length) doubles from rank 0")
        }
        let staged = try await node.allReduce(node.stagedBroadcasts, .sum)
        try expect((staged > 0) == (offeredByBroadcast > 0), "broadcasts read by two or more ranks are staged exactly where they are offered")
        for length in [100_003, 4096 * n * 8 + 5] { try await expectRingOrderSum(node, length: length) }
        let mins = try await node.allReduce((0..<200_000).map { Int64(($0 * 31 + node.id * 17) % 1000) }, .min)
        try expect(mins.indices.allSatisfy { i in mins[i] == (0..<n).map { Int64((i * 31 + $0 * 17) % 1000) }.min() }, "allReduce min of Int64")
        let offered = try await node.allReduce(node.offeredArrays, .sum)
        try expect((offeredByBroadcast > 0) == (offered > offeredByBroadcast), "broadcast offers exactly where allReduce does")
        // Readers of a staged broadcast map the root's shared segment (not when they refuse offers).
        let mapped = try await node.allReduce(node.mappedSegments, .sum)
        say("ok single-copy \(offered > 0 ? "offered" : "sent")\(mapped > 0 ? ", segments mapped" : "")")

    case "sends-offered":
        // Point-to-point single copy, rank 0 to rank 1 (arrays of 8 MiB or more to a rank of the
        // same worker go as offers, written into the receiver's memory): offers among small
        // messages on one tag keep their order, `.any` takes one, a change to an array after its
        // send does not reach the receiver, more arrays than may wait for an answer (64) are sent
        // before any is read, and an array still unread when its sender has left and exited arrives.
        let large = 1 << 20 + 1
        func same<T: Equatable>(_ array: [T], _ value: T, count: Int) -> Bool {
            array.count == count && stride(from: 0, to: count, by: 4093).allSatisfy { array[$0] == value } && array[count - 1] == value
        }
        if node.id == 0 {
            for i in 0..<6 { try await node.send([Double](repeating: Double(i), count: i % 2 == 0 ? 10 : large), to: 1, tag: 5) }
            var changed = [Int64](repeating: 1, count: large)
            try await node.send(changed, to: 1, tag: 6)
            changed[0] = 2
            changed[large - 1] = 2
            try await node.send(changed, to: 1, tag: 6)
            try await node.send([Float](repeating: 0.5, count: 2 * large), to: 1, tag: 7)
            let many = [UInt32](repeating: 8, count: 2 * large)
            for _ in 0..<70 { try await node.send(many, to: 1, tag: 8) }
            try await node.send(0, to: 1, tag: 11)
            // 77 large arrays; at most 64 wait unread, and none of tag 8 is read before tag 11.
            let offered = node.offeredArrays
            try expect(offered < 77, "at most 64 offers wait (\(offered) made)")
            try await node.send(offered, to: 1, tag: 10)
            try await node.send([UInt8](repeating: 9, count: 8 * large), to: 1, tag: 9)
            say("ok sends-offered \(offered > 0 ? "offered" : "sent")")
            // Node.run leaves (and exits) now, before rank 1 reads tag 9.
        } else if node.id == 1 {
            for i in 0..<6 {
                let got = try await node.recv([Double].self, from: 0, tag: 5)
                try expect(same(got, Double(i), count: i % 2 == 0 ? 10 : large), "message \(i) of tag 5 in order")
            }
            let first = try await node.recv([Int64].self, from: 0, tag: 6)
            let second = try await node.recv([Int64].self, from: 0, tag: 6)
            try expect(same(first, 1, count: large), "the array as it was sent")
            try expect(second[0] == 2 && second[large - 1] == 2 && second[1] == 1, "the changed array")
            let any = try await node.recvMessage([Float].self)
            try expect(any.source == 0 && any.tag == 7 && same(any.value, 0.5, count: 2 * large), ".any")
            _ = try await node.recv(Int.self, from: 0, tag: 11)
            for i in 0..<70 {
                let got = try await node.recv([UInt32].self, from: 0, tag: 8)
                try expect(same(got, 8, count: 2 * large), "message \(i) of tag 8")
            }
            let offered = try await node.recv(Int.self, from: 0, tag: 10)
            // Wait until rank 0 has exited: a receive of what it never sends fails then.
            do {
                _ = try await node.recv(Int.self, from: 0, tag: 99)
                throw CheckFailure(description: "a message rank 0 never sent")
            } catch NodeError.peerExited {}
            let last = try await node.recv([UInt8].self, from: 0, tag: 9)
            try expect(same(last, 9, count: 8 * large), "the array sent before leaving")
            say("ok sends-offered \(offered > 0 ? "offered" : "sent")")
        }

    case "broadcast-reader-dies":
        // Three ranks of one worker. Rank 2, the first child of the root (0) in the broadcast's
        // tree, has exited before the broadcast starts. The root offers its staged copy to 2 and
        // to 1, and then fails at once waiting for 2's answer, while rank 1 may still be copying
        // 8 MB out of that copy: the root keeps it rather than unmapping it under the read, and
        // rank 1 gets the whole array and says so to the root, which is alive until it has.
        let values = (0..<(1 << 20)).map { Double($0) * 0.5 }
        if node.id == 0 {
            try await node.send(1, to: 2)
            _ = try await node.recv(Int.self, from: 2)
            do {
                _ = try await node.recv(Int.self, from: 2, tag: 99)
                throw CheckFailure(description: "a message rank 2 never sent")
            } catch NodeError.peerExited {}
            do {
                _ = try await node.broadcast(values, root: 0)
                say("no error?")
            } catch {
                try expect(try await node.recv(Bool.self, from: 1), "rank 1 got the whole array")
                say("ok broadcast-reader-dies, staged \(node.stagedBroadcasts), parked \(node.parkedMemory)")
            }
        } else if node.id == 2 {
            _ = try await node.recv(Int.self, from: 0)
            try await node.send(1, to: 0)
            exit(0)
        } else {
            let got = try await node.broadcast(nil as [Double]?, root: 0)
            try await node.send(got == values, to: 0)
            say("ok broadcast-reader-dies")
        }

    case "bigring":
        // Everyone sends first, then receives: works because sends are buffered.
        let size = argument << 20
        let payload = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            for i in 0..<size { buffer[i] = UInt8(truncatingIfNeeded: i &* 31 &+ node.id) }
            count = size
        }
        try await node.send(payload, to: next)
        let received = try await node.recv([UInt8].self, from: prev)
        try expect(received.count == size, "size")
        var ok = true
        for i in stride(from: 0, to: size, by: 4093) where received[i] != UInt8(truncatingIfNeeded: i &* 31 &+ prev) { ok = false }
        try expect(ok, "content")
        say("ok bigring \(argument) MiB")

    case "transport":
        // Which way messages to the next rank went: a shared-memory ring shows as a mapping of
        // the worker's memfd ("distr-ring") in this process.
        try await node.send(node.id, to: next)
        try expect(try await node.recv(Int.self, from: prev) == prev, "message from the previous rank")
        // Read to the end (Foundation's one-shot read of a /proc file can stop short).
        let maps = String(decoding: (try? FileIO.readAll("/proc/self/maps")) ?? [], as: UTF8.self)  // No /proc: reported as no ring.
        say("ok transport \(maps.contains("memfd:distr-ring") ? "shm" : "socket")")

    case "dead-peer":
        // Rank 1 exits at once without sending; rank 0's receive from it must fail, not hang.
        if node.id == 1 { exit(0) }
        if node.id == 0 {
            await expectFailure { _ = try await node.recv(Int.self, from: 1) }
        }

    case "to-last":
        // Every rank sends to the last at once: on one worker, the last rank is spawned last, so
        // the first ranks ask for it before it exists.
        let last = node.count - 1
        if node.id != last { try await node.send(node.id, to: last) }
        if node.id == last {
            var seen = Set<Int>()
            for _ in 0..<last { seen.insert(try await node.recv(Int.self, from: .any)) }
            try expect(seen == Set(0..<last), "one message from every other rank")
        }
        say("ok to-last")

    case "lost-node":
        // The test kills rank 1's worker; rank 0's receive from rank 1 must then fail, not hang.
        if node.id == 1 {
            say("waiting")
            while true { sleep(1000) }
        }
        if node.id == 0 {
            say("ready")
            await expectFailure { _ = try await node.recv(Int.self, from: 1) }
        }

    case "dead-peer-after-send":
        // A message sent before exiting is still delivered; the next receive fails.
        if node.id == 1 {
            try await node.send("last words", to: 0)
            exit(0)
        }
        if node.id == 0 {
            let words = try await node.recv(String.self, from: 1)
            try expect(words == "last words", "message sent before exit")
            await expectFailure { _ = try await node.recv(String.self, from: 1) }
        }

    case "send-to-gone":
        // Rank 1 takes one message and exits; rank 0's sends to it, written on a socket whose
        // other end has closed, fail with an error (EPIPE), not the end of the process (SIGPIPE).
        if node.id == 1 {
            _ = try await node.recv(Int.self, from: 0)
            exit(0)
        }
        if node.id == 0 {
            try await node.send(1, to: 1)
            await expectFailure {
                for _ in 0..<100_000 { try await node.send([UInt8](repeating: 1, count: 4096), to: 1) }
            }
        }

    case "abort":
        // Rank 1 fails; the job is ended and rank 0's pending receive fails with the abort.
        signal(SIGTERM, SIG_IGN)
        // After the barrier everyone has passed the line above. Rank 1 may leave the barrier
        // before the others have (a barrier only says all have entered), so their failure may
        // come in the barrier or in the receive: either way it must come promptly.
        if node.id == 1 {
            try await node.barrier()
            exit(2)
        }
        await expectFailure {
            try await node.barrier()
            _ = try await node.recv(Int.self, from: 1, tag: 9)
        }

    default:
        throw CheckFailure(description: "unknown scenario '\(scenario)'")
    }
}
