/// What a worker says about itself in answer to `statusRequest` (`distr-master status`).
///
/// Times are wall-clock nanoseconds since the epoch on the worker; with the master's own send
/// and receive times they give the clock offset the NTP way (see `clockOffset`).
package struct StatusReport: Sendable, Equatable {
    package var distrVersion: String
    package var protocolVersion: UInt16
    package var hostName: String
    /// `uname` system name and release, e.g. "Linux 6.1.0".
    package var operatingSystem: String
    /// `uname` machine, e.g. "aarch64".
    package var architecture: String
    package var cores: Int
    /// 1, 5 and 15 minute load averages, in thousandths (the wire carries integers).
    package var loadMilli: [Int]
    package var freeMemoryBytes: UInt64
    package var workDirectory: String
    package var freeDiskBytes: UInt64
    package var runningJobs: Int
    /// 0: no bound (`distr-worker --max-jobs`).
    package var maxJobs: Int
    /// The address this worker sees the master's connection come from.
    package var masterAddress: String
    package var receivedAt: UInt64
    package var sentAt: UInt64

    package init(
        distrVersion: String, protocolVersion: UInt16, hostName: String, operatingSystem: String, architecture: String,
        cores: Int, loadMilli: [Int], freeMemoryBytes: UInt64, workDirectory: String, freeDiskBytes: UInt64,
        runningJobs: Int, maxJobs: Int, masterAddress: String, receivedAt: UInt64, sentAt: UInt64
    ) {
        self.distrVersion = distrVersion
        self.protocolVersion = protocolVersion
        self.hostName = hostName
        self.operatingSystem = operatingSystem
        self.architecture = architecture
        self.cores = cores
        self.loadMilli = loadMilli
        self.freeMemoryBytes = freeMemoryBytes
        self.workDirectory = workDirectory
        self.freeDiskBytes = freeDiskBytes
        self.runningJobs = runningJobs
        self.maxJobs = maxJobs
        self.masterAddress = masterAddress
        self.receivedAt = receivedAt
        self.sentAt = sentAt
    }

    func encode(into w: inout ByteWriter) {
        w.string(distrVersion)
        w.u16(protocolVersion)
        w.string(hostName)
        w.string(operatingSystem)
        w.string(architecture)
        w.int(cores)
        w.u32(UInt32(loadMilli.count))
        for load in loadMilli { w.int(load) }
        w.u64(freeMemoryBytes)
        w.string(workDirectory)
        w.u64(freeDiskBytes)
        w.int(runningJobs)
        w.int(maxJobs)
        w.string(masterAddress)
        w.u64(receivedAt)
        w.u64(sentAt)
    }

    /// - Throws: `WireError.truncated`, or `.refused` for counts that cannot be true.
    static func decode(from r: inout ByteReader) throws(WireError) -> StatusReport {
        let distrVersion = try r.string()
        let protocolVersion = try r.u16()
        let hostName = try r.string()
        let operatingSystem = try r.string()
        let architecture = try r.string()
        let cores = try r.int()
        let loadCount = try r.count(elementSize: 8)
        guard loadCount <= 3 else { throw .refused("a status report carries at most 3 load averages, not \(loadCount)") }
        var loadMilli: [Int] = []
        for _ in 0..<loadCount { loadMilli.append(try r.int()) }
        let freeMemory = try r.u64()
        let workDirectory = try r.string()
        let freeDisk = try r.u64()
        let runningJobs = try r.int()
        let maxJobs = try r.int()
        guard cores >= 0, runningJobs >= 0, maxJobs >= 0, loadMilli.allSatisfy({ $0 >= 0 }) else {
            throw .refused("a status report with a negative count (cores \(cores), jobs \(runningJobs), max-jobs \(maxJobs))")
        }
        return StatusReport(
            distrVersion: distrVersion, protocolVersion: protocolVersion, hostName: hostName, operatingSystem: operatingSystem,
            architecture: architecture, cores: cores, loadMilli: loadMilli, freeMemoryBytes: freeMemory,
            workDirectory: workDirectory, freeDiskBytes: freeDisk, runningJobs: runningJobs, maxJobs: maxJobs,
            masterAddress: try r.string(), receivedAt: try r.u64(), sentAt: try r.u64())
    }

    /// The worker's clock minus the master's, in seconds, from the master's send time `t0`, the
    /// worker's receive and send times, and the master's receive time `t3` (all nanoseconds):
    /// ((t1 − t0) + (t2 − t3)) / 2, as NTP computes it. Exact when both legs take equally long.
    package func clockOffset(sentAt t0: UInt64, receivedAt t3: UInt64) -> Double {
        let a = Double(Int64(bitPattern: receivedAt &- t0))
        let b = Double(Int64(bitPattern: sentAt &- t3))
        return (a + b) / 2 / 1e9
    }
}
