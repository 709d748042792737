@preconcurrency import Glibc
import DistrCore
import Foundation

/// Two network namespaces joined by a veth pair (10.77.0.1 and 10.77.0.2), so that two workers
/// have their own addresses and rank traffic crosses a real (virtual) link. Needs root and `ip`.
struct NamespacePair {
    static let names = ["distr-bench-a", "distr-bench-b"]
    static let addresses = ["10.77.0.1", "10.77.0.2"]

    static func ip(_ arguments: [String]) -> Bool {
        (try? Subprocess(["ip"] + arguments).wait()) == .exited(0)  // Not runnable counts as failed.
    }

    /// Creates the pair; nil (with the reason) when it cannot.
    static func create() -> String? {
        guard getuid() == 0 else { return "network namespaces need root" }
        destroy()
        let steps: [[String]] = [
            ["netns", "add", names[0]], ["netns", "add", names[1]],
            ["link", "add", "dbench-a", "netns", names[0], "type", "veth", "peer", "name", "dbench-b", "netns", names[1]],
            ["-n", names[0], "addr", "add", addresses[0] + "/24", "dev", "dbench-a"],
            ["-n", names[1], "addr", "add", addresses[1] + "/24", "dev", "dbench-b"],
            ["-n", names[0], "link", "set", "dbench-a", "up"], ["-n", names[1], "link", "set", "dbench-b", "up"],
            ["-n", names[0], "link", "set", "lo", "up"], ["-n", names[1], "link", "set", "lo", "up"],
        ]
        for step in steps where !ip(step) {
            destroy()
            return "'ip \(step.joined(separator: " "))' failed (is iproute2 installed?)"
        }
        return nil
    }

    static func destroy() {
        for name in names { _ = ip(["netns", "delete", name]) }
    }

    static func exec(_ index: Int) -> [String] { ["ip", "netns", "exec", names[index]] }
}
