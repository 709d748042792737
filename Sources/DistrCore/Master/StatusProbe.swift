import Dispatch
import Synchronization

/// `distr-master status`: asks every peer about itself, all at once, each within the connect
/// timeout. The exchange is decided by `StatusProbeProtocol`; this only moves bytes.
package enum StatusProbe {
    /// Probes each distinct peer (peers naming the same worker are asked once), in peers order.
    package static func probe(_ peers: [Peer], secret: [UInt8], timeout: Double) -> [PeerStatus] {
        var distinct: [Peer] = []
        var seen = Set<String>()
        for peer in peers where seen.insert(peer.description).inserted { distinct.append(peer) }
        let results = Mutex<[Int: PeerStatus]>([:])
        let group = DispatchGroup()
        for (index, peer) in distinct.enumerated() {
            group.enter()
            Threads.start(name: "distr-status") {
                defer { group.leave() }
                let status = probe(peer, secret: secret, timeout: timeout)
                results.withLock { $0[index] = status }
            }
        }
        group.wait()
        let found = results.withLock { $0 }
        return distinct.indices.compactMap { found[$0] }
    }

    static func probe(_ peer: Peer, secret: [UInt8], timeout: Double) -> PeerStatus {
        // The connect and the report, together within `timeout`.
        let deadline = Deadline.after(timeout)
        let connection: Connection
        do { (connection, _) = try Launcher.connect(peer, secret: secret, timeout: timeout) } catch {
            return PeerStatus(label: peer.label, outcome: .failed(ConnectFailure.classify(error, node: peer.label, address: peer.description)))
        }
        defer { connection.close() }
        var machine = StatusProbeProtocol()
        var actions = machine.start(now: Clock.wallNanoseconds)
        var sentAt: UInt64 = 0
        while true {
            for action in actions {
                switch action {
                case .send(let message):
                    if case .statusRequest(let t0) = message { sentAt = t0 }
                    // A failed send shows up as the receive below failing.
                    connection.sendIfConnected(message)
                case .report(let report):
                    let offset = report.clockOffset(sentAt: sentAt, receivedAt: Clock.wallNanoseconds)
                    return PeerStatus(label: peer.label, outcome: .usable(report, clockOffset: offset))
                case .failed(let why):
                    return PeerStatus(label: peer.label, outcome: .failed(ConnectFailure(kind: "protocol error", message: why)))
                }
            }
            do { actions = machine.received(try connection.receiveMessage(idle: deadline)) } catch {
                let reason: String
                if case WireError.stalled = error { reason = "no report within the connect timeout" } else { reason = "\(error)" }
                actions = machine.connectionEnded(reason)
            }
        }
    }
}
