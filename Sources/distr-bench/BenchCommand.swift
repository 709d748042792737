@preconcurrency import Glibc
import DistrCore
import Foundation

enum BenchCommand {
    static func run(json: Bool, quick: Bool, namespaces: Bool, pythonOnly: Bool) -> Int32 {
        Signals.ignorePipe()
        var workers: [WorkerProcess] = []
        var bench: Bench
        do { bench = try Bench(quick: quick) } catch {
            fputs("distr-bench: \(error)\n", stderr)
            return 1
        }
        defer {
            WorkerProcess.stop(workers)
            NamespacePair.destroy()
            FileIO.removeTree(bench.root)
        }
        do {
            var ports: [Int] = []
            for index in 0..<16 {
                let worker = try bench.startWorker(index)
                workers.append(worker)
                ports.append(worker.port)
            }
            if pythonOnly {
                // The Python bandwidth is compared with Swift ranks on the same path: measure those too.
                try bench.messaging(label: "two workers on loopback", peers: "127.0.0.1:\(ports[0])\n127.0.0.1:\(ports[1])\n", transport: "tcp")
                try bench.python(ports: ports)
                if json { bench.printJSON() } else { bench.printTable() }
                return 0
            }
            try bench.launch(workers: ports)
            try bench.gather(port: ports[0])
            try bench.messaging(label: "same node", peers: "127.0.0.1:\(ports[0]) slots=2\n", transport: "unix")
            try bench.messaging(label: "two workers on loopback", peers: "127.0.0.1:\(ports[0])\n127.0.0.1:\(ports[1])\n", transport: "tcp")
            if namespaces {
                if let why = NamespacePair.create() {
                    bench.notes.append("two-node case skipped: \(why)")
                } else {
                    var nodes: [Int] = []
                    for index in 0..<2 {
                        let worker = try bench.startWorker(
                            100 + index, prefix: NamespacePair.exec(index), bind: NamespacePair.addresses[index])
                        workers.append(worker)
                        nodes.append(worker.port)
                    }
                    let peers = "\(NamespacePair.addresses[0]):\(nodes[0])\n\(NamespacePair.addresses[1]):\(nodes[1])\n"
                    try bench.messaging(
                        label: "two nodes (netns, veth)", peers: peers, transport: "tcp",
                        environment: ["DISTR_BENCH_PEER_HOST=\(NamespacePair.addresses[1])"], prefix: NamespacePair.exec(0))
                }
            }
            try bench.allReduce(ports: ports)
            try bench.python(ports: ports)
        } catch {
            fputs("distr-bench: \(error)\n", stderr)
            return 1
        }
        bench.notes.append(
            "launch: distr is a whole distr-master process (start, connect, run, collect); the baseline is posix_spawn of /bin/true in-process")
        bench.notes.append(
            "messaging: the baseline is a plain socket between the same two rank processes (Unix socket on one node, TCP across), blocking read/write"
        )
        if json { bench.printJSON() } else { bench.printTable() }
        return 0
    }
}
