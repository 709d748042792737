import Foundation
import Synchronization
import Testing

@testable import DistrCore

/// A virtual cluster made of network namespaces: `hostCount` hosts with their own addresses
/// (10.213.N.1...) on a bridge that lives in the master's namespace (10.213.N.254), one
/// `distr-worker` in each host. Every packet stays inside the namespaces made here; `close`
/// (run by `withVirtualCluster` whatever the test does) stops the workers and deletes them.
final class VirtualCluster: Sendable {
    /// Distinct names and subnets for clusters made at once by one test process.
    private static let made = Atomic<Int>(0)

    let master: String
    let hosts: [String]
    let addresses: [String]
    let root: TemporaryDirectory
    let secretFile: String
    let peersFile: String
    private let workerList = Mutex<[TestWorker]>([])
    var workers: [TestWorker] { workerList.withLock { $0 } }

    init(hostCount: Int = 4, workerArguments: [String] = []) throws {
        let serial = Self.made.add(1, ordering: .relaxed).newValue
        let tag = "\(getpid() % 100_000)x\(serial)"
        let subnet = "10.213.\(serial % 250)"
        master = "dvm\(tag)"
        hosts = (0..<hostCount).map { "dvh\($0)_\(tag)" }
        addresses = (0..<hostCount).map { "\(subnet).\($0 + 1)" }
        root = try TemporaryDirectory()
        secretFile = root.path + "/secret"
        peersFile = root.path + "/peers.txt"
        do {
            try ClusterSecret.generate(path: secretFile)
            try NamespaceHosts.ip(["netns", "add", master])
            try NamespaceHosts.ip(["-n", master, "link", "set", "lo", "up"])
            try NamespaceHosts.ip(["-n", master, "link", "add", "br0", "type", "bridge"])
            try NamespaceHosts.ip(["-n", master, "addr", "add", "\(subnet).254/24", "dev", "br0"])
            try NamespaceHosts.ip(["-n", master, "link", "set", "br0", "up"])
            for (index, host) in hosts.enumerated() {
                try NamespaceHosts.ip(["netns", "add", host])
                try NamespaceHosts.ip(["-n", host, "link", "set", "lo", "up"])
                try NamespaceHosts.ip([
                    "-n", master, "link", "add", "port\(index)", "type", "veth", "peer", "name", "eth0", "netns", host,
                ])
                try NamespaceHosts.ip(["-n", master, "link", "set", "port\(index)", "master", "br0", "up"])
                try NamespaceHosts.ip(["-n", host, "addr", "add", addresses[index] + "/24", "dev", "eth0"])
                try NamespaceHosts.ip(["-n", host, "link", "set", "eth0", "up"])
            }
            var peers = ""
            for (index, host) in hosts.enumerated() {
                let worker = try TestWorker(
                    secretFile: secretFile, workDirectory: root.path + "/work\(index)", arguments: workerArguments,
                    prefix: ["ip", "netns", "exec", host], bind: addresses[index])
                workerList.withLock { $0.append(worker) }
                peers += "\(worker.peer) slots=1\n"
            }
            try FileIO.write(peersFile, Array(peers.utf8), mode: 0o644, exclusive: false)
        } catch {
            close()
            throw error
        }
    }

    /// Stops the workers (SIGCONT first, for one a test froze), deletes the namespaces, removes the files.
    func close() {
        for worker in workers {
            worker.process.signal(SIGCONT)
            worker.stop()
        }
        for name in [master] + hosts {
            _ = try? TestProcess(["ip", "netns", "delete", name]).wait()  // Not made (a failed init): nothing to delete.
        }
        root.remove()
    }

    deinit { close() }

    /// Runs a command inside a namespace.
    func exec(in namespace: String) -> [String] { ["ip", "netns", "exec", namespace] }

    /// Starts `distr-master SUBCOMMAND --peers ... --secret-file ... ARGS` in the master's namespace.
    func startMaster(_ subcommand: String, _ arguments: [String]) throws -> TestProcess {
        try TestProcess(
            exec(in: master) + [Binaries.master, subcommand, "--peers", peersFile, "--secret-file", secretFile] + arguments,
            directory: root.path)
    }

    /// Takes host `index`'s only link down (or up): a partition, no FIN, no RST.
    func setLink(_ index: Int, up: Bool) throws {
        try NamespaceHosts.ip(["-n", hosts[index], "link", "set", "eth0", up ? "up" : "down"])
    }

    /// Starts a new worker on host `index` with the same work directory (after one was killed):
    /// it reclaims what the old one left.
    func restartWorker(_ index: Int) throws {
        let worker = try TestWorker(
            secretFile: secretFile, workDirectory: root.path + "/work\(index)", prefix: ["ip", "netns", "exec", hosts[index]],
            bind: addresses[index])
        workerList.withLock { $0[index] = worker }
    }

    /// Job directories and job records left in a worker's work directory.
    func leftovers(_ index: Int) -> [String] {
        let directory = root.path + "/work\(index)"
        let top = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])  // Gone: nothing left.
            .filter { $0 != ".distr-cache" && $0 != ".distr-jobs" && $0 != ".distr-python" && $0 != ".distr-spare" }
        let records = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/.distr-jobs")) ?? []  // None made.
        return top + records
    }

    /// Processes of a worker's jobs still alive: its children other than its own sentinel and
    /// its compile of the Python modules.
    func leftoverProcesses(_ index: Int) -> [pid_t] {
        Processes.children(of: workers[index].process.pid).filter {
            // Checked last: one that exited meanwhile is not one of them (nor a compile, then).
            !Processes.isWorker($0) && !Processes.isModuleCompileOrItsOrphan($0) && !Processes.isExiting($0)
        }
    }

    /// Waits (bounded) until worker `index` logs that `count` jobs finished (a line with any of
    /// `markers`), then returns what its jobs left behind (directories, records, processes):
    /// empty when clean.
    func waitClean(_ index: Int, finishedJobs count: Int = 1, markers: [String] = [": finished"], timeout: Double = 20) -> [String] {
        let logged = workers[index].process.stderr.waitUntil(timeout: timeout) { log in
            markers.reduce(0) { $0 + log.components(separatedBy: $1).count - 1 } >= count
        }
        guard logged else {
            return ["worker \(index) did not log its job's end within \(timeout) s; its log:\n\(workers[index].process.stderr.text)"]
        }
        // A marker may come before the job's last resources are released: the lease is logged
        // as the worker starts ending the job (a job that never started logs nothing after its
        // cleanup). Seen once in a loop of the suite: the directory and record were still there
        // at the first look.
        let cleaned = Deadline.after(timeout)
        while true {
            let left = leftovers(index) + leftoverProcesses(index).map(Processes.describe)
            if left.isEmpty || cleaned.hasPassed { return left }
            Deadline.pause(0.01)
        }
    }
}

/// Runs `body` on a new virtual cluster, closed whatever `body` does.
func withVirtualCluster<Value>(hostCount: Int = 4, workerArguments: [String] = [], _ body: (VirtualCluster) throws -> Value) throws -> Value {
    let cluster = try VirtualCluster(hostCount: hostCount, workerArguments: workerArguments)
    defer { cluster.close() }
    return try body(cluster)
}
