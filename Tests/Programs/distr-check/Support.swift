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
