/// Limits on everything a peer controls. The worker's are configurable on its command line.
package struct Limits: Sendable {
    /// Largest frame payload accepted on a control connection.
    package var maxFrame: Int = 4 << 20
    /// Largest total size of a job's shipped files.
    package var maxBundleBytes: Int = 8 << 30
    /// Most files in one bundle.
    package var maxFiles: Int = 100_000
    /// Longest relative path in a bundle.
    package var maxPathLength: Int = 4096
    /// Most connections still in their handshake at once.
    package var maxPendingHandshakes: Int = 64
    /// Most connections from one address in their handshake at once (addresses of running
    /// jobs' nodes and masters are not limited: their rank connections come in bursts).
    package var maxPendingHandshakesPerSource: Int = 8
    /// Seconds a peer has to finish the whole handshake.
    package var handshakeTimeout: Double = 5
    /// Seconds a peer has to finish a frame once it has begun one, and a master, once
    /// authenticated, to send its job description.
    package var frameTimeout: Double = 30

    package init() {}
    package static let `default` = Limits()
}
