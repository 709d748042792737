/// What a rank connection's hello carries as its context: the job and the two ranks. The dialing
/// rank (`Node`) writes it; the worker reads it to pick the job key and the target rank.
package struct RankConnectionContext: Sendable, Equatable {
    package var jobID: String
    package var from: Int
    package var to: Int

    package init(jobID: String, from: Int, to: Int) {
        self.jobID = jobID
        self.from = from
        self.to = to
    }

    /// The context bytes for the hello.
    package var encoded: [UInt8] {
        var w = ByteWriter()
        w.string(jobID)
        w.int(from)
        w.int(to)
        return w.bytes
    }

    /// Reads the context of a hello; nil when the bytes are not exactly one context.
    package init?(decoding context: [UInt8]) {
        var r = ByteReader(context)
        do {
            let parsed = (try r.string(), try r.int(), try r.int())
            guard r.isAtEnd else { return nil }
            (jobID, from, to) = parsed
        } catch {
            return nil  // Malformed: the handshake answers exactly as for a wrong key.
        }
    }
}
