import Foundation
import Testing

@testable import DistrCore

/// Two hosts with their own addresses: network namespaces joined by a veth pair. Host B also has
/// a second interface whose address host A cannot reach (like docker0 or virbr0): ranks must use
/// the address the master actually reached. Needs root and iproute2; skipped otherwise.
final class NamespaceHosts: Sendable {
    let names: [String]
    let addresses = ["10.231.0.1", "10.231.0.2"]

    /// Root, iproute2, and a kernel/sandbox that lets us make a namespace (probed once).
    static let available: Bool = {
        guard getuid() == 0, ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].contains(where: { (path: String) in access(path, X_OK) == 0 }) else {
            return false
        }
        let probe = "dtprobe\(getpid() % 100_000)"
        guard (try? ip(["netns", "add", probe])) != nil else { return false }
        _ = try? ip(["netns", "delete", probe])
        return true
    }()

    static func ip(_ arguments: [String]) throws {
        let run = TestProcess.run(try TestProcess(["ip"] + arguments))
        if run.status != 0 { throw TestFailure("ip \(arguments.joined(separator: " ")): \(run.stderr)") }
    }

    init() throws {
        let suffix = "\(getpid() % 100_000)"
        names = ["dtA\(suffix)", "dtB\(suffix)"]
        let veth = ["dvA\(suffix)", "dvB\(suffix)"]
        do {
            try Self.ip(["netns", "add", names[0]])
            try Self.ip(["netns", "add", names[1]])
            try Self.ip(["link", "add", veth[0], "netns", names[0], "type", "veth", "peer", "name", veth[1], "netns", names[1]])
            for i in 0..<2 {
                try Self.ip(["-n", names[i], "addr", "add", addresses[i] + "/24", "dev", veth[i]])
                try Self.ip(["-n", names[i], "link", "set", veth[i], "up"])
                try Self.ip(["-n", names[i], "link", "set", "lo", "up"])
            }
            // The decoy: an address on host B that host A has no route to.
            try Self.ip(["-n", names[1], "addr", "add", "10.232.0.2/32", "dev", "lo"])
        } catch {
            cleanUp()
            throw error
        }
    }

    func cleanUp() {
        for name in names { _ = try? TestProcess(["ip", "netns", "delete", name]).wait() }
    }

    deinit { cleanUp() }

    func exec(_ index: Int) -> [String] { ["ip", "netns", "exec", names[index]] }
}

@Suite(.hangGuard, .enabled(if: NamespaceHosts.available, "needs root and iproute2"))
struct MultiHostTests {
    init() { Signals.ignorePipe() }

    @Test func ranksOnTwoHostsTalkThroughTheAddressTheMasterReached() throws {
        let hosts = try NamespaceHosts()
        let root = try TemporaryDirectory()
        let secret = root.path + "/secret"
        try ClusterSecret.generate(path: secret)
        var workers: [TestWorker] = []
        defer { for worker in workers { worker.stop() } }
        var ports: [Int] = []
        for index in 0..<2 {
            // Host B listens on every address, decoy included.
            let worker = try TestWorker(
                secretFile: secret, workDirectory: root.path + "/work\(index)", prefix: hosts.exec(index),
                bind: index == 0 ? hosts.addresses[0] : "0.0.0.0")
            workers.append(worker)
            ports.append(worker.port)
        }
        try root.write("peers.txt", "\(hosts.addresses[0]):\(ports[0]) slots=2\n\(hosts.addresses[1]):\(ports[1]) slots=2\n")
        for scenario in ["api", "collectives", "order"] {
            let run = TestProcess.run(
                try TestProcess(
                    hosts.exec(0) + [
                        Binaries.master, "run", "-q", "--peers", root.path + "/peers.txt", "--secret-file", secret, MessagingTests.check,
                        scenario,
                    ]))
            #expect(run.status == 0, "\(scenario): \(run.stderr)")
            #expect(run.stdoutLines.sorted() == (0..<4).map { "[\($0)] ok \(scenario)" }, "\(run.stdout)")
        }
        let where_ = TestProcess.run(
            try TestProcess(
                hosts.exec(0) + [
                    Binaries.master, "exec", "-q", "--peers", root.path + "/peers.txt", "--secret-file", secret, "--", "echo $DISTR_HOST",
                ]))
        #expect(where_.stdoutLines.sorted() == ["[0] \(hosts.addresses[0]):\(ports[0])", "[1] \(hosts.addresses[1]):\(ports[1])"])
    }
}
