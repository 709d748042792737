@preconcurrency import Glibc
import DistrCore
import Foundation

struct Point: Codable, Sendable, Equatable {
    var x: Double
    var label: String
    var note: String?
    var tags: [Int]
    var nested: [String: Int]
}

/// A struct a Python rank reads with `kind=(int, str, [float])`: its fields in declaration order.
struct Labelled: Codable, Sendable, Equatable {
    var count: Int
    var name: String
    var weights: [Double]
}

struct CheckFailure: Error, CustomStringConvertible {
    var description: String
}

func expect(_ condition: Bool, _ what: String) throws {
    if !condition { throw CheckFailure(description: "check failed: \(what)") }
}

@MainActor func expectError(_ what: String, contains: String, _ body: () async throws -> Void) async throws {
    do {
        try await body()
        throw CheckFailure(description: "\(what): expected an error")
    } catch let error as NodeError {
        try expect("\(error)".contains(contains), "\(what): '\(error)' should mention '\(contains)'")
    }
}

func say(_ text: String) {
    print(text)
    fflush(stdout)
}

@MainActor func expectFailure(_ body: () async throws -> Void) async {
    do {
        try await body()
        say("no error?")
        exit(1)
    } catch {
        say("ok failed: \(error)")
        exit(0)
    }
}

/// Element `index` of rank `rank`'s array in the order-sensitive allReduce checks: magnitudes
/// 1e8 apart and inexact quotients, so sums in different orders round differently. The Python
/// peer (python-peer.py) computes the same numbers.
func awkward(rank: Int, index: Int) -> Double {
    Double((index * 7919 + rank * 104_729) % 1_000_003) / 7.0 * ((index + rank) % 3 == 0 ? 1e8 : 1)
}

/// Checks that an allReduce sum of the `awkward` arrays is the same bits on every rank (rank 0's
/// result, broadcast, is the reference) and close to the sum in rank order.
func expectSameSumEverywhere(_ node: Node, length: Int) async throws {
    let sum = try await node.allReduce((0..<length).map { awkward(rank: node.id, index: $0) }, .sum)
    let reference = try await node.broadcast(node.id == 0 ? sum : nil)
    try expect(sum.map(\.bitPattern) == reference.map(\.bitPattern), "allReduce of \(length) doubles: the same bits on every rank")
    let close = sum.indices.allSatisfy { index in
        let expected = (0..<node.count).reduce(0.0) { $0 + awkward(rank: $1, index: index) }
        return abs(sum[index] - expected) <= 1e-12 * abs(expected)
    }
    try expect(sum.count == length && close, "allReduce of \(length) doubles: the sum")
}

/// allReduce (the ring) of awkward doubles against the sum in the ring's order computed here:
/// chunk c starts as rank c's part, and rank c + k adds its own part in front (`mine + theirs`).
/// Whichever way the chunks travelled, the bits must be these.
func expectRingOrderSum(_ node: Node, length: Int) async throws {
    let n = node.count
    let sum = try await node.allReduce((0..<length).map { awkward(rank: node.id, index: $0) }, .sum)
    var expected = [Double](repeating: 0, count: length)
    for chunk in 0..<n {
        for index in chunk * length / n..<(chunk + 1) * length / n {
            var total = awkward(rank: chunk, index: index)
            for step in 1..<Swift.max(n, 1) { total = awkward(rank: (chunk + step) % n, index: index) + total }
            expected[index] = total
        }
    }
    try expect(sum.map(\.bitPattern) == expected.map(\.bitPattern), "allReduce of \(length) doubles: the bits of the ring's order")
}

/// The TCP sockets this process holds open (descriptors that are copies of one socket count
/// once): the inodes of `/proc/self/fd`'s sockets that `/proc/self/net/tcp` and `tcp6` list.
func tcpConnections() -> Int {
    var tcp = Set<String>()
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        // Read to its end (Foundation's reader stops at the size `stat` gives, 0 for /proc).
        guard let bytes = try? FileIO.readAll(table) else { continue }  // No IPv6 here.
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            // Established ones only (state 01): a listening or closing socket is no connection.
            if fields.count > 9 && fields[3] == "01" { tcp.insert(String(fields[9])) }
        }
    }
    var mine = Set<String>()
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    for fd in fds {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)") else { continue }  // Closed meanwhile.
        if target.hasPrefix("socket:["), case let inode = String(target.dropFirst(8).dropLast()), tcp.contains(inode) { mine.insert(inode) }
    }
    return mine.count
}
