@preconcurrency import Glibc
import DistrCore
import Foundation

/// What runs inside the benchmark job's ranks: the same measurement through distr and through a
/// plain socket between the same two processes, printed as `RESULT name distr baseline` lines.
enum RankBench {
    static func run(_ arguments: [String]) async {
        await Node.run { node in
            let mode = arguments.first ?? ""
            let transport = arguments.dropFirst().first ?? "tcp"
            let quick = arguments.dropFirst(2).first == "quick"
            switch mode {
            case "messaging": try await messaging(node, transport: transport, quick: quick, busy: false)
            case "busy": try await messaging(node, transport: transport, quick: quick, busy: true)
            case "collectives": try await collectives(node, quick: quick)
            case "pingpong": try await pingPongOnly(node, arguments: Array(arguments.dropFirst()))
            case "broadcast": try await broadcastOnly(node, arguments: Array(arguments.dropFirst()))
            case "barrier": try await barrierOnly(node, arguments: Array(arguments.dropFirst()))
            case "allreduce": try await allReduceOnly(node, arguments: Array(arguments.dropFirst()))
            case "rawpingpong": try await rawPingPongOnly(node, arguments: Array(arguments.dropFirst()))
            case "stream": try await streamOnly(node, arguments: Array(arguments.dropFirst()))
            case "rawstream": try await rawStreamOnly(node, arguments: Array(arguments.dropFirst()))
            default: throw NodeError.badArgument("unknown bench mode \(mode)")
            }
        }
    }

    static func report(_ node: Node, _ name: String, distr: Double, baseline: Double?) {
        guard node.id == 0 else { return }
        print("RESULT \(name)\t\(distr)\t\(baseline ?? -1)")
        fflush(stdout)
    }

    /// The `RESULT name<TAB>distr<TAB>baseline` lines of a job's output (baseline -1: none).
    static func results(_ output: String) -> [(name: String, distr: Double, baseline: Double?)] {
        output.split(separator: "\n").compactMap { line in
            guard let start = line.range(of: "RESULT ") else { return nil }
            let fields = line[start.upperBound...].split(separator: "\t")
            guard fields.count == 3, let distr = Double(fields[1]), let baseline = Double(fields[2]) else { return nil }
            return (String(fields[0]), distr, baseline < 0 ? nil : baseline)
        }
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }

    // MARK: messaging between ranks 0 and 1

    /// `busy`: only 8 B latency against the blocking socket, in short batches (the machine's
    /// cores are all taken by busy loops, and each round trip may wait for a time slice).
    static func messaging(_ node: Node, transport: String, quick: Bool, busy: Bool) async throws {
        let peer = 1 - node.id
        let baseline = try await baselineSocket(node, transport: transport)
        defer { close(baseline) }
        let scale = quick ? 4 : 1
        let sizes = busy ? [(8, 1000 / scale)] : [(8, 4000 / scale), (1024, 3000 / scale), (65536, 400 / scale)]
        for (size, iterations) in sizes {
            let payload = [UInt8](repeating: 7, count: size)
            var distrBatches: [Double] = []
            var rawBatches: [Double] = []
            // Warm up both paths (connections are made on first use).
            _ = try await pingPong(node, peer: peer, payload: payload, iterations: 200)
            _ = try rawPingPong(baseline, first: node.id == 0, size: size, iterations: 200)
            for _ in 0..<5 {
                distrBatches.append(try await pingPong(node, peer: peer, payload: payload, iterations: iterations))
                rawBatches.append(try rawPingPong(baseline, first: node.id == 0, size: size, iterations: iterations))
            }
            report(node, "latency \(size) B", distr: median(distrBatches) * 1e6, baseline: median(rawBatches) * 1e6)
            if busy { continue }
            // distr's receive polls the socket briefly before sleeping; compare with a baseline that
            // does the same (nonblocking reads in a loop) too.
            var spinBatches: [Double] = []
            FD.setNonblocking(baseline)
            for _ in 0..<5 { spinBatches.append(try rawPingPong(baseline, first: node.id == 0, size: size, iterations: iterations)) }
            FD.setNonblocking(baseline, false)
            report(node, "latency \(size) B vs busy-polling socket", distr: median(distrBatches) * 1e6, baseline: median(spinBatches) * 1e6)
        }
        if busy { return }
        for megabytes in [1, 16, 64] {
            let size = megabytes << 20
            // As many bytes per sample in a quick run as in a full one, in fewer samples (a
            // sample of one or two large messages is mostly the first message's start).
            let count = max(4, 256 / megabytes)
            let payload = [UInt8](repeating: 3, count: size)
            var distrRates: [Double] = []
            var rawRates: [Double] = []
            var buffer: [UInt8] = []
            // One sample's worth first, on both paths, not timed (as osu_bw skips its first
            // iterations): the receiver reads frames ahead of its receives, and a frame read
            // ahead finds no array of its size to reuse until a few receives have given theirs
            // back, so the first messages of a size go into fresh memory, page-faulted as the
            // kernel copies into it (the first 64 MiB sample ran at 0.6-1.0 GB/s, the next at
            // 2-4.8). The plain socket's buffer is made and filled before its timing.
            _ = try await stream(node, peer: peer, payload: payload, count: count, buffer: &buffer)
            _ = try rawStream(baseline, first: node.id == 0, size: size, count: 1)
            for _ in 0..<(quick ? 3 : 5) {
                distrRates.append(try await stream(node, peer: peer, payload: payload, count: count, buffer: &buffer))
                rawRates.append(try rawStream(baseline, first: node.id == 0, size: size, count: count))
            }
            if node.id == 0 { print("SAMPLES bandwidth \(megabytes) MiB \(distrRates.map { Int($0) }) raw \(rawRates.map { Int($0) })") }
            report(node, "bandwidth \(megabytes) MiB", distr: median(distrRates), baseline: median(rawRates))
        }
    }

    /// `--rank pingpong SIZE COUNT`: only distr's ping-pong, for profilers (`perf stat`, `strace -c`)
    /// to count the cost of one message without the baselines' share.
    static func pingPongOnly(_ node: Node, arguments: [String]) async throws {
        let size = arguments.first.flatMap { Int($0) } ?? 8
        let count = arguments.dropFirst().first.flatMap { Int($0) } ?? 10000
        let seconds = try await pingPong(node, peer: 1 - node.id, payload: [UInt8](repeating: 7, count: size), iterations: count)
        report(node, "latency \(size) B", distr: seconds * 1e6, baseline: nil)
    }

    /// `--rank broadcast BYTES COUNT`: COUNT broadcasts of BYTES (doubles) from rank 0, each
    /// followed by a barrier, as the collectives case times them; reports the median time (ms)
    /// and the CPU time of all ranks together per broadcast (ms, from `getrusage`), which does
    /// not depend on what else the machine runs. A barrier-only loop's CPU is reported too.
    static func broadcastOnly(_ node: Node, arguments: [String]) async throws {
        let bytes = arguments.first.flatMap { Int($0) } ?? 8 << 20
        let count = arguments.dropFirst().first.flatMap { Int($0) } ?? 50
        let data = [Double](repeating: 1.5, count: bytes / 8)
        _ = try await node.broadcast(node.id == 0 ? data : nil, root: 0)
        try await node.barrier()
        let cpuStart = cpuSeconds()
        let times = try await timedBroadcasts(node, data, repeats: count)
        let broadcastCPU = try await node.allReduce(cpuSeconds() - cpuStart, .sum)
        let barrierStart = cpuSeconds()
        for _ in 0..<count {
            try await node.barrier()
            try await node.barrier()
        }
        let barrierCPU = try await node.allReduce(cpuSeconds() - barrierStart, .sum)
        report(node, "broadcast \(bytes) B", distr: median(times) * 1e3, baseline: nil)
        report(node, "broadcast CPU per call, all ranks", distr: broadcastCPU / Double(count) * 1e3, baseline: nil)
        report(node, "two barriers' CPU, all ranks", distr: barrierCPU / Double(count) * 1e3, baseline: nil)
    }

    /// `--rank barrier COUNT`: seven runs of COUNT barriers; reports the median time of one
    /// (µs) and the CPU time of all ranks together per barrier (µs, `getrusage`).
    static func barrierOnly(_ node: Node, arguments: [String]) async throws {
        let count = arguments.first.flatMap { Int($0) } ?? 1000
        try await node.barrier()
        let cpuStart = cpuSeconds()
        var times: [Double] = []
        for _ in 0..<7 {
            let start = DistrCore.Clock.now
            for _ in 0..<count { try await node.barrier() }
            times.append((DistrCore.Clock.now - start) / Double(count))
        }
        let cpu = try await node.allReduce(cpuSeconds() - cpuStart, .sum)
        report(node, "barrier", distr: median(times) * 1e6, baseline: nil)
        report(node, "barrier CPU, all ranks", distr: cpu / Double(7 * count) * 1e6, baseline: nil)
    }

    /// This process's user and system CPU time in seconds (`getrusage`).
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6
        return user + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
    }

    /// `--rank allreduce ELEMENTS COUNT`: COUNT allReduce sums of ELEMENTS doubles, each started
    /// after a barrier, as the collectives case times them; reports the median time (ms) and the
    /// CPU time of all ranks together per call (ms, `getrusage`, the barriers' share included).
    static func allReduceOnly(_ node: Node, arguments: [String]) async throws {
        let elements = arguments.first.flatMap { Int($0) } ?? 1 << 20
        let count = arguments.dropFirst().first.flatMap { Int($0) } ?? 50
        let values = [Double](repeating: Double(node.id), count: elements)
        _ = try await node.allReduce(values, .sum)
        try await node.barrier()
        let cpuStart = cpuSeconds()
        let times = try await timedAllReduces(node, values, repeats: count)
        let cpu = try await node.allReduce(cpuSeconds() - cpuStart, .sum)
        report(node, "allReduce \(elements) doubles", distr: median(times) * 1e3, baseline: nil)
        report(node, "allReduce CPU per call, all ranks", distr: cpu / Double(count) * 1e3, baseline: nil)
    }

    /// `--rank stream SIZE COUNT [SAMPLES]`: the bandwidth case's stream alone (rank 0 sends COUNT
    /// messages of SIZE bytes to rank 1, which receives them into a reused buffer), SAMPLES times
    /// (5), each after a barrier; reports the median rate (MB/s), every sample's rate (a
    /// `SAMPLES` line), and the CPU time of both ranks together per message (ms, `getrusage`),
    /// which other load changes far less than the rate.
    static func streamOnly(_ node: Node, arguments: [String]) async throws {
        let (size, count, samples) = streamArguments(arguments)
        let payload = [UInt8](repeating: 3, count: size)
        var buffer: [UInt8] = []
        _ = try await stream(node, peer: 1 - node.id, payload: payload, count: count, buffer: &buffer)
        let cpuStart = cpuSeconds()
        var rates: [Double] = []
        for _ in 0..<samples { rates.append(try await stream(node, peer: 1 - node.id, payload: payload, count: count, buffer: &buffer)) }
        let cpu = try await node.allReduce(cpuSeconds() - cpuStart, .sum)
        if node.id == 0 { print("SAMPLES \(rates.map { Int($0) })") }
        report(node, "stream \(size) B", distr: median(rates), baseline: nil)
        report(node, "stream CPU per message, both ranks", distr: cpu / Double(samples * count) * 1e3, baseline: nil)
    }

    /// SIZE (16 MiB), COUNT (8) and SAMPLES (5, at least 1) of `stream` and `rawstream`.
    static func streamArguments(_ arguments: [String]) -> (size: Int, count: Int, samples: Int) {
        let numbers = arguments.map { Int($0) }
        func number(_ index: Int) -> Int? { index < numbers.count ? numbers[index] : nil }
        return (number(0) ?? 16 << 20, number(1) ?? 8, max(1, number(2) ?? 5))
    }

    /// `--rank rawstream SIZE COUNT [SAMPLES]`: the same over a plain TCP socket between the two
    /// ranks (the bandwidth case's baseline, blocking), reported as `stream`'s rates are.
    static func rawStreamOnly(_ node: Node, arguments: [String]) async throws {
        let (size, count, samples) = streamArguments(arguments)
        let fd = try await baselineSocket(node, transport: "tcp")
        defer { close(fd) }
        _ = try rawStream(fd, first: node.id == 0, size: size, count: count)
        var rates: [Double] = []
        for _ in 0..<samples { rates.append(try rawStream(fd, first: node.id == 0, size: size, count: count)) }
        if node.id == 0 { print("SAMPLES \(rates.map { Int($0) })") }
        report(node, "raw stream \(size) B", distr: median(rates), baseline: nil)
    }

    /// The times of `repeats` broadcasts of `data` (all 1.5) from rank 0, each started after a
    /// barrier and ended after another: everyone has it only when the last rank has it.
    static func timedBroadcasts(_ node: Node, _ data: [Double], repeats: Int) async throws -> [Double] {
        var times: [Double] = []
        for _ in 0..<repeats {
            try await node.barrier()
            let start = DistrCore.Clock.now
            let received = try await node.broadcast(node.id == 0 ? data : nil, root: 0)
            try await node.barrier()
            times.append(DistrCore.Clock.now - start)
            guard received.count == data.count, received[received.count / 2] == 1.5 else { throw NodeError.badArgument("wrong broadcast result") }
        }
        return times
    }

    /// The times of `repeats` allReduce sums of `values` (each rank's id), each started after a
    /// barrier; the results are checked.
    static func timedAllReduces(_ node: Node, _ values: [Double], repeats: Int) async throws -> [Double] {
        var times: [Double] = []
        for _ in 0..<repeats {
            try await node.barrier()
            let start = DistrCore.Clock.now
            let result = try await node.allReduce(values, .sum)
            times.append(DistrCore.Clock.now - start)
            guard result[result.count / 2] == Double(node.count * (node.count - 1) / 2) else { throw NodeError.badArgument("wrong allReduce result") }
        }
        return times
    }

    /// `--rank rawpingpong SIZE COUNT MODE`: the plain-socket ping-pong alone; MODE `block` or
    /// `poll` over one connection, `block2` or `poll2` over two (one per direction, as distr's links);
    /// `ppoll` or `ppoll2`: nonblocking reads that sleep in `ppoll` when they find nothing (the way a
    /// distr receive sleeps on a socket), over one connection or two; `pollep`: `poll` with the
    /// socket also registered, silenced, in an epoll set (as a distr rank's progress thread holds
    /// a connection its receive is reading: the kernel then calls the set's wake-up on every
    /// arrival).
    static func rawPingPongOnly(_ node: Node, arguments: [String]) async throws {
        let size = arguments.first.flatMap { Int($0) } ?? 8
        let count = arguments.dropFirst().first.flatMap { Int($0) } ?? 10000
        let mode = arguments.dropFirst(2).first ?? "block"
        let forth = try await baselineSocket(node, transport: "tcp")
        defer { close(forth) }
        let back = mode.hasSuffix("2") ? try await baselineSocket(node, transport: "tcp") : forth
        defer { if back != forth { close(back) } }
        let sleepInPoll = mode.hasPrefix("ppoll")
        if mode.hasPrefix("poll") || sleepInPoll {
            FD.setNonblocking(forth)
            FD.setNonblocking(back)
        }
        // Rank 0 writes on `forth` and reads `back`; rank 1 the other way round.
        let (out, into) = node.id == 0 ? (forth, back) : (back, forth)
        let watcher = mode == "pollep" ? try Epoll() : nil
        if let watcher {
            try watcher.add(into)
            try watcher.setArmed(into, false)
        }
        defer { withExtendedLifetime(watcher) {} }
        let seconds = try rawPingPong(writing: out, reading: into, first: node.id == 0, size: size, iterations: count, sleepInPoll: sleepInPoll)
        report(node, "raw latency \(size) B \(mode)", distr: seconds * 1e6, baseline: nil)
    }

    /// One-way latency in seconds, from round trips.
    static func pingPong(_ node: Node, peer: Int, payload: [UInt8], iterations: Int) async throws -> Double {
        try await node.barrier()
        let start = DistrCore.Clock.now
        for _ in 0..<iterations {
            if node.id == 0 {
                try await node.send(payload, to: peer)
                _ = try await node.recv([UInt8].self, from: peer)
            } else {
                let message = try await node.recv([UInt8].self, from: peer)
                try await node.send(message, to: peer)
            }
        }
        return (DistrCore.Clock.now - start) / Double(2 * iterations)
    }

    /// Bandwidth in MB/s: `count` messages one way, then a one-byte acknowledgement.
    static func stream(_ node: Node, peer: Int, payload: [UInt8], count: Int, buffer: inout [UInt8]) async throws -> Double {
        try await node.barrier()
        let start = DistrCore.Clock.now
        if node.id == 0 {
            for _ in 0..<count { try await node.send(payload, to: peer) }
            _ = try await node.recv([UInt8].self, from: peer)
        } else {
            // Received into a reused buffer (recv(into:)), as a program receiving an array per
            // phase would.
            for _ in 0..<count { try await node.recv(into: &buffer, from: peer) }
            try await node.send([UInt8(1)], to: peer)
        }
        return Double(payload.count * count) / (DistrCore.Clock.now - start) / 1e6
    }

    // MARK: the plain-socket baseline

    /// Rank 1 listens (Unix socket for "unix", TCP on its worker's address for "tcp"); rank 0 connects.
    static func baselineSocket(_ node: Node, transport: String) async throws -> Int32 {
        if node.id == 1 {
            let (listener, address) = try listen(transport: transport)
            try await node.send(address, to: 0)
            let fd = accept(listener, nil, nil)
            close(listener)
            configure(fd)
            return fd
        }
        let address = try await node.recv(String.self, from: 1)
        return try connect(transport: transport, address: address)
    }

    static func listen(transport: String) throws -> (Int32, String) {
        if transport == "unix" {
            let path = NSTemporaryDirectory() + "/distr-bench-\(getpid()).sock"
            unlink(path)
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = unixAddress(path)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0, Glibc.listen(fd, 1) == 0 else { throw NodeError.badArgument("cannot listen on \(path)") }
            return (fd, path)
        }
        let (fd, address) = try TCPSocket.listen(host: "0.0.0.0", port: 0)
        return (fd, String(address.port))
    }

    static func connect(transport: String, address: String) throws -> Int32 {
        if transport == "unix" {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var target = unixAddress(address)
            let status = withUnsafePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard status == 0 else { throw NodeError.badArgument("cannot connect to \(address)") }
            unlink(address)
            return fd
        }
        let host = ProcessInfo.processInfo.environment["DISTR_BENCH_PEER_HOST"] ?? "127.0.0.1"
        let fd = try TCPSocket.connect(host: host, port: Int(address) ?? 0, timeout: 5)
        configure(fd)
        return fd
    }

    static func unixAddress(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        return address
    }

    static func configure(_ fd: Int32) {
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Blocking reads, or busy-polling ones when the socket is nonblocking.
    /// `sleepInPoll`: a nonblocking `fd` that has nothing yet is waited on with `ppoll` (as distr's
    /// receives sleep on a socket) instead of read again at once.
    static func readFully(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, sleepInPoll: Bool = false) throws {
        var offset = 0
        while offset < count {
            let n = read(fd, buffer + offset, count - offset)
            if n < 0 && errno == EAGAIN && sleepInPoll {
                _ = [fd].withUnsafeBufferPointer { try? FD.wait(for: $0, seconds: 1e-4) }  // A failed wait: the next read says why.
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            if n <= 0 { throw NodeError.badArgument("baseline socket closed") }
            offset += n
        }
    }

    static func writeFully(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws {
        var offset = 0
        while offset < count {
            let n = write(fd, buffer + offset, count - offset)
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            if n <= 0 { throw NodeError.badArgument("baseline socket closed") }
            offset += n
        }
    }

    /// One byte each way, so both sides start timing at the same moment.
    static func startTogether(_ fd: Int32, first: Bool) throws {
        try startTogether(writing: fd, reading: fd, first: first)
    }

    static func startTogether(writing out: Int32, reading into: Int32, first: Bool) throws {
        var sync: UInt8 = 0
        if first {
            try writeFully(out, &sync, 1)
            try readFully(into, &sync, 1)
        } else {
            try readFully(into, &sync, 1)
            try writeFully(out, &sync, 1)
        }
    }

    /// The same round trips over the plain socket: fixed-size messages, blocking read and write.
    static func rawPingPong(_ fd: Int32, first: Bool, size: Int, iterations: Int) throws -> Double {
        try rawPingPong(writing: fd, reading: fd, first: first, size: size, iterations: iterations)
    }

    /// Round trips that write on `out` and read `into` (one socket, or one per direction).
    static func rawPingPong(
        writing out: Int32, reading into: Int32, first: Bool, size: Int, iterations: Int, sleepInPoll: Bool = false
    ) throws -> Double {
        var buffer = [UInt8](repeating: 7, count: size)
        return try buffer.withUnsafeMutableBytes { raw in
            let pointer = raw.baseAddress!
            try startTogether(writing: out, reading: into, first: first)
            let start = DistrCore.Clock.now
            for _ in 0..<iterations {
                if first {
                    try writeFully(out, pointer, size)
                    try readFully(into, pointer, size, sleepInPoll: sleepInPoll)
                } else {
                    try readFully(into, pointer, size, sleepInPoll: sleepInPoll)
                    try writeFully(out, pointer, size)
                }
            }
            return (DistrCore.Clock.now - start) / Double(2 * iterations)
        }
    }

    /// `count` messages of `size` bytes one way over the plain socket, then a one-byte
    /// acknowledgement; MB/s. Each side makes its buffer first (filled, so resident).
    static func rawStream(_ fd: Int32, first: Bool, size: Int, count: Int) throws -> Double {
        var buffer = [UInt8](repeating: 3, count: size)
        return try buffer.withUnsafeMutableBytes { raw in
            let pointer = raw.baseAddress!
            var sync: UInt8 = 0
            try startTogether(fd, first: first)
            let start = DistrCore.Clock.now
            if first {
                for _ in 0..<count { try writeFully(fd, pointer, size) }
                try readFully(fd, &sync, 1)
            } else {
                for _ in 0..<count { try readFully(fd, pointer, size) }
                try writeFully(fd, &sync, 1)
            }
            return Double(size * count) / (DistrCore.Clock.now - start) / 1e6
        }
    }

    // MARK: collectives

    /// barrier (µs), broadcast of 8 MB (1M doubles, ms) and allReduce of 1M doubles (ms), each
    /// the median of several, started together after a barrier; the results are checked.
    static func collectives(_ node: Node, quick: Bool) async throws {
        let repeats = quick ? 3 : 7
        var barriers: [Double] = []
        try await node.barrier()
        for _ in 0..<repeats {
            try await node.barrier()
            let start = DistrCore.Clock.now
            for _ in 0..<100 { try await node.barrier() }
            barriers.append((DistrCore.Clock.now - start) / 100)
        }
        report(node, "barrier", distr: median(barriers) * 1e6, baseline: nil)
        let data = [Double](repeating: 1.5, count: 1 << 20)
        _ = try await node.broadcast(node.id == 0 ? data : nil, root: 0)
        let broadcasts = try await timedBroadcasts(node, data, repeats: repeats)
        report(node, "broadcast 8 MB", distr: median(broadcasts) * 1e3, baseline: nil)
        let values = [Double](repeating: Double(node.id), count: 1 << 20)
        _ = try await node.allReduce(values, .sum)
        let reductions = try await timedAllReduces(node, values, repeats: repeats)
        report(node, "allReduce 1M doubles", distr: median(reductions) * 1e3, baseline: nil)
    }
}
