/// One decoder of peer or file input, wrapped as a function over arbitrary bytes.
///
/// The `distr-fuzz` executable hands these to libFuzzer, and `FuzzCorpusTests` replays the seed
/// corpus (`Fuzz/Corpus/<name>/`) through them. A target returns normally for every input the
/// decoder accepts or rejects with an error; it stops the process (a crash, as libFuzzer counts
/// them) when the decoder traps, or when what it accepted breaks a promise the target checks,
/// such as "decodes equal after re-encoding" or "no path component is `..` byte for byte".
package struct FuzzTarget: Sendable {
    /// The name on the command line and of the corpus folder.
    package let name: String
    /// What the input bytes are.
    package let input: String
    package let run: @Sendable ([UInt8]) -> Void

    package static let all: [FuzzTarget] = [
        FuzzTarget(
            name: "frames",
            input: "u8 k (mod 8), k chunk sizes, then a control-connection byte stream",
            run: FuzzTarget.frames),
        FuzzTarget(name: "control-message", input: "u8 frame type, then the frame payload", run: FuzzTarget.controlMessage),
        FuzzTarget(
            name: "handshake",
            input: "a hello (with context and proof after it), or a server reply",
            run: FuzzTarget.handshake),
        FuzzTarget(name: "agent-message", input: "one agent-channel packet", run: FuzzTarget.agentMessage),
        FuzzTarget(name: "peers", input: "the text of a peers.txt file", run: FuzzTarget.peers),
        FuzzTarget(name: "host-list", input: "a host-list expression (--hosts)", run: FuzzTarget.hostList),
        FuzzTarget(name: "bundle-path", input: "one bundle path (UTF-8, repaired as the wire does)", run: FuzzTarget.bundlePath),
        FuzzTarget(name: "manifest", input: "a jobStart payload; its manifest is validated", run: FuzzTarget.manifest),
        FuzzTarget(
            name: "binary-codable",
            input: "u8 type selector (mod 5), then a BinaryEncoder payload",
            run: FuzzTarget.binaryCodable),
        FuzzTarget(name: "rank-frame", input: "a rank frame header", run: FuzzTarget.rankFrame),
        FuzzTarget(
            name: "shared-ring",
            input: "a script of ring writes, reads, sleeps and hostile index and flag overwrites",
            run: FuzzTarget.sharedRing),
    ]

    package static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    /// The inputs of `Fuzz/Corpus/KNOWN_CRASHES`: corpus-relative paths (`manifest/overflow-sum`),
    /// one a line; `#` starts a comment.
    package static func knownCrashes(_ text: String) -> [String] {
        // "\r\n" is one Character, so it is a separator of its own.
        text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).compactMap { line in
            let path = line.prefix { $0 != "#" }.trimmed(" \t\r")
            return path.isEmpty ? nil : path
        }
    }
}

/// Stops the process when a decoder broke a promise, so that libFuzzer keeps the input.
func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("fuzz check failed: \(message())") }
}
