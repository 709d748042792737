import Synchronization

/// How a worker runs.
package struct WorkerConfiguration: Sendable {
    package var bind: String = "0.0.0.0"
    package var port: Int = Peer.defaultPort
    package var secret: [UInt8]
    package var workDirectory: String
    /// Where the Python modules are installed (`--python-dir`); nil: `WORKDIR/.distr-python`.
    package var pythonDirectory: String?
    package var limits = Limits()
    /// Seconds between SIGTERM and SIGKILL when a job is ended.
    package var grace: Double = 2
    /// The lease: seconds the master may be silent (no heartbeat) before its job is ended.
    package var masterTimeout: Double = Liveness.defaultTimeout
    /// Bytes of shipped files kept by digest for later jobs (0: no cache).
    package var cacheBytes = 1 << 30
    /// Track jobs' processes with a cgroup per job where one can be made.
    package var useControlGroups = true
    /// The worker's sentinel process (see `Sentinel`), which job sweeps must spare.
    package var sentinel: Int32?
    /// Jobs run at once (`--max-jobs`); a job over the bound waits for a slot. nil: no bound.
    package var maxJobs: Int?
    /// The protocol version this worker advertises: `Handshake.version`, except in tests of
    /// version mismatch (`DISTR_TEST_PROTOCOL_VERSION`, read by `distr-worker` only).
    package var protocolVersion: UInt16 = Handshake.version
    package var log: @Sendable (String) -> Void

    package init(secret: [UInt8], workDirectory: String, log: @escaping @Sendable (String) -> Void) {
        self.secret = secret
        self.workDirectory = workDirectory
        self.log = log
    }
}
