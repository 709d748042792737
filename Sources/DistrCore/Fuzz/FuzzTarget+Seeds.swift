/// One input of the seed corpus: `Fuzz/Corpus/<target>/<name>`.
package struct FuzzSeed: Sendable {
    package let target: String
    package let name: String
    package let bytes: [UInt8]
}

/// The seed corpus, generated from the encoders so that it follows the formats as they change
/// (`distr-fuzz --write-seeds Fuzz/Corpus`). Besides valid inputs it holds regression seeds: the
/// inputs of bugs found so far, some of which still crash (`Fuzz/Corpus/KNOWN_CRASHES`).
extension FuzzTarget {
    package static func seeds() -> [FuzzSeed] {
        var out: [FuzzSeed] = []
        func add(_ target: String, _ name: String, _ bytes: [UInt8]) { out.append(FuzzSeed(target: target, name: name, bytes: bytes)) }

        let messages = sampleControlMessages()
        var sealer = FrameSealer(keys: peerFrameKeys, headerOnlyTypes: [ControlMessage.fileDataType])
        let stream = messages.prefix(3).flatMap { sealer.seal(type: $0.message.type, payload: $0.message.encoded()) }
        add("frames", "three-frames", [0] + stream)
        add("frames", "three-frames-split", [3, 1, 7, 60] + stream)
        add("frames", "too-large", [0, 0x00, 0x10, 0x00, 0x00, 3] + [UInt8](repeating: 0, count: 32))
        add("frames", "bad-mac", [0] + stream.prefix(stream.count - 1) + [stream.last.map { $0 ^ 1 } ?? 0])

        for (name, message) in messages { add("control-message", name, [message.type] + message.encoded()) }

        let client = handshakeClient
        let server = Handshake.Server(key: handshakeKey, hello: client.hello, nonce: serverNonce)
        let proof = (try? client.finish(reply: server.reply))?.proof ?? []  // Cannot fail: the reply is the server's own.
        add("handshake", "hello", client.hello.encoded())
        add("handshake", "hello-with-proof", client.hello.encoded() + proof)
        add("handshake", "reply", server.reply)
        add("handshake", "reply-and-verdict", server.reply + [Handshake.Verdict.accepted])
        add("handshake", "refusal-version", Handshake.Server.refusal(.versionMismatch))

        let placements = samplePlacements()
        let agentMessages: [(String, AgentMessage)] = [
            ("hello", .hello(rank: 1)),
            ("welcome", .welcome(jobID: "job-1", jobKey: [UInt8](repeating: 7, count: 32), workerIndex: 0, placements: placements)),
            ("connect-local", .connectLocal(to: 2)), ("connected", .connected(to: 2, error: "")),
            ("connected-error", .connected(to: 3, error: "rank 3 has exited")), ("incoming", .incoming(from: 0)),
            ("peer-exited", .peerExited(rank: 1, status: 137)), ("abort", .abort(reason: "rank 0 failed")),
            ("hello-shared-memory", .helloSharedMemory(rank: 1)), ("connected-shared", .connectedShared(to: 2)),
            ("incoming-shared", .incomingShared(from: 0)), ("hello-reading-offers", .helloReadingOffers(rank: 1)),
            ("hello-answering", .helloAnswering(rank: 1)),
            ("reads-offers", .readsOffers(rank: 2)),
        ]
        for (name, message) in agentMessages { add("agent-message", name, message.encoded()) }

        add("peers", "example", Array("# cluster\nnode1\nnode2:7000 slots=4\n10.0.0.5   # lab pc\n\n[::1]:6970\n[fe80::1]\n".utf8))
        add("peers", "host-lists", Array("rpi-[0-3] slots=2\nnode[01-04,07]:7000\n".utf8))
        for (name, expression) in [
            ("pdsh", "rpi-[0-3]"), ("padded-port", "node[01-04,07]:7000"), ("slurm", "cn[001-004,010],gpu[1-2]-ib,login"),
            ("cartesian", "r[1-2]n[01-03]"), ("ipv6", "h1,[::1]:6970,[fe80::1]"), ("unclosed", "n[1-2"),
            ("reversed", "n[5-3]"), ("too-many", "a[0-99]b[0-99]"),
        ] {
            add("host-list", name, Array(expression.utf8))
        }
        add("peers", "crlf-tabs", Array("a:1\tslots=2\r\nfe80::2\r\n[::1]\r\n".utf8))

        for (name, path) in [("plain", "app"), ("nested", "data/in/input.txt"), ("dots", "a.b/.hidden/..x/x..")] {
            add("bundle-path", name, Array(path.utf8))
        }
        // Regression: "/" followed by a combining mark is one Character, so String.split and
        // == ".." miss the component the kernel sees.
        add("bundle-path", "unicode-dotdot", Array("../\u{301}X".utf8))
        // Regressions found by this target: "/\u{32E}" does not have the prefix "/" for String,
        // and "a//\u{651}a" has no empty component for String.split.
        add("bundle-path", "unicode-absolute", Array("/\u{32E}".utf8))
        add("bundle-path", "unicode-empty-component", Array("a//\u{651}a".utf8))

        add("manifest", "job-start", ControlMessage.jobStart(sampleSpec()).encoded())
        var spec = sampleSpec()
        spec.manifest = []
        add("manifest", "no-files", ControlMessage.jobStart(spec).encoded())
        // Regression: two sizes that each pass the limit check but whose sum overflows Int.
        spec.manifest = [
            ManifestEntry(path: "a", mode: 0o644, size: 1, digest: [UInt8](repeating: 1, count: 32)),
            ManifestEntry(path: "b", mode: 0o644, size: Int.max, digest: [UInt8](repeating: 2, count: 32)),
        ]
        add("manifest", "overflow-sum", ControlMessage.jobStart(spec).encoded())
        spec.manifest = [ManifestEntry(path: "../\u{301}X", mode: 0o644, size: 1, digest: [UInt8](repeating: 1, count: 32))]
        add("manifest", "unicode-dotdot", ControlMessage.jobStart(spec).encoded())

        let encoder = BinaryEncoder()
        let record = FuzzRecord(
            id: 7, label: "r", flag: true, values: [1, -2, 3], words: ["a", ""], matrix: [[1.5], [], [2, -0.0]],
            inner: .init(small: -3, unsigned: 65535, note: nil), inners: [.init(small: 1, unsigned: 2, note: "n")],
            optionals: [1, nil], table: ["k": 1])
        let tree = FuzzTree.node(.labeled("x", .leaf(1)), .node(.box(.empty), .leaf(-1)))
        add("binary-codable", "string", [0] + ((try? encoder.encode("héllo")) ?? []))  // Encoding these values cannot fail.
        add("binary-codable", "ints", [1] + ((try? encoder.encode([1, Int.min, Int.max])) ?? []))  // As above.
        add("binary-codable", "doubles", [2] + ((try? encoder.encode([1.0, -.infinity, .nan])) ?? []))  // As above.
        add("binary-codable", "record", [3] + ((try? encoder.encode(record)) ?? []))  // As above.
        add("binary-codable", "tree", [4] + ((try? encoder.encode(tree)) ?? []))  // As above.
        // Regression: a value nested deeper than the stack, built level by level because the
        // encoder would overflow the stack too.
        add("binary-codable", "deep-recursion", [4] + deeplyNestedTree(depth: 60_000))

        let frames: [(String, RankFrame)] = [
            ("message", RankFrame(encoding: .bytes, tag: 5, length: 12)),
            ("codable", RankFrame(encoding: .codable, fingerprint: RankFrame.fingerprint(of: FuzzRecord.self), tag: 0, length: 100)),
            ("numeric", RankFrame(encoding: .numeric, element: Double.wireCode, tag: -3, length: 800)),
            ("pickle", RankFrame(encoding: .pickle, tag: 2, length: 30)),
            ("goodbye", RankFrame(kind: RankFrame.goodbye, encoding: .bytes, tag: 0, length: 0)),
        ]
        // The first byte is the chunk size the stream is fed in (see `decodeRankFrames`).
        for (name, frame) in frames {
            add("rank-frame", name, [0xFF] + frame.header() + [UInt8](repeating: 7, count: frame.length))
        }
        // Connection signals: the first byte also picks the one the stream may begin with
        // (0xFD: `bothWays`, 0xFE: `answer`, 0xFF: none).
        let message = RankFrame(encoding: .bytes, tag: 1, length: 3)
        add("rank-frame", "both-ways-first", [0xFD] + RankFrame.signal(RankFrame.bothWays).header() + message.header() + [1, 2, 3])
        add("rank-frame", "answer-first", [0xFE] + RankFrame.signal(RankFrame.answer, tag: 1).header() + message.header() + [1, 2, 3])
        add("rank-frame", "signal-out-of-place", [0xFD] + message.header() + [1, 2, 3] + RankFrame.signal(RankFrame.bothWays).header())
        let offer = OfferedSend(
            id: 7,
            memory: MemoryOffer(pid: 4242, address: 1 << 30, byteCount: 1 << 20, elementCode: Double.wireCode, identity: 99, identityAddress: 1 << 29)
        )
        let offerFrame = RankFrame(kind: RankFrame.offer, encoding: .numeric, element: Double.wireCode, tag: 3, length: OfferedSend.wireSize)
        add("rank-frame", "offer", [0xFF] + offerFrame.header() + offer.encoded)
        // Regression: a length no receiver can allocate; the decoder must refuse it before
        // allocating.
        var huge = RankFrame(encoding: .bytes, tag: 0, length: Int.max).header()
        add("rank-frame", "huge-length", [7] + huge)
        huge[16] = 0xFF
        add("rank-frame", "length-over-int-max", [7] + huge)
        // Shared ring scripts (see `sharedRing`): writes and reads across the wrap, then the
        // peer's indices overwritten with impossible values.
        add("shared-ring", "write-read-wrap", [0, 0x0F, 0xA0, 1, 0x0F, 0xA0, 0, 0x08, 0x00, 1, 0x10, 0x00, 0, 0x0C, 0x00, 1, 0x10, 0x00])
        add("shared-ring", "head-too-far", [0, 0, 100, 2] + [0, 0, 0, 0, 0, 1, 0, 0] + [1, 0, 200])
        add("shared-ring", "head-backwards", [0, 0, 100, 1, 0, 100, 2] + [0, 0, 0, 0, 0, 0, 0, 50] + [1, 0, 10])
        add("shared-ring", "tail-ahead", [0, 0, 100, 3] + [0, 0, 0, 0, 0, 0, 0, 101] + [0, 0, 10])
        // Flags set to anything by the peer change no byte (then both sides ask to be woken).
        add("shared-ring", "hostile-flags", [4, 0xFF, 0xFF, 0xFF, 0xFF, 6, 0, 0, 0, 2, 0, 0, 100, 5, 0, 0, 0, 1, 7, 1, 0, 60, 7, 1, 0, 60])
        add("shared-ring", "tail-wrapped", [0, 0x10, 0x00, 3] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + [0, 0, 10, 1, 0x10, 0x00])
        return out
    }

    static func samplePlacements() -> [RankPlacement] {
        [
            RankPlacement(rank: 0, host: "127.0.0.1", port: 6969, worker: 0, label: "localhost"),
            RankPlacement(rank: 1, host: "::1", port: 7000, worker: 1, label: "[::1]:7000"),
        ]
    }

    static func sampleSpec() -> JobSpec {
        JobSpec(
            jobID: "job-1", arguments: ["./app", "--n", "3"], environment: ["A=1"], localRanks: [0, 1],
            placements: samplePlacements(), keepDirectory: false, jobKey: [UInt8](repeating: 9, count: 32),
            manifest: [
                ManifestEntry(path: "app", mode: 0o755, size: 1000, digest: [UInt8](repeating: 3, count: 32)),
                ManifestEntry(path: "data/in.txt", mode: 0o644, size: 12, digest: [UInt8](repeating: 4, count: 32)),
                // Its digest follows its bytes (`fileDigests`).
                ManifestEntry(path: "data/large.bin", mode: 0o644, size: 70_000, digest: []),
            ], workerIndex: 0, stdinRanks: [0])
    }

    static func sampleControlMessages() -> [(name: String, message: ControlMessage)] {
        [
            ("job-start", .jobStart(sampleSpec())), ("file-data", .fileData(Array("hello".utf8))),
            ("cancel", .cancel(reason: "interrupted")), ("peer-exited", .peerExited(rank: 1, status: -9)),
            ("job-ready", .jobReady(directory: "/tmp/distr-job-1")), ("launch", .launch),
            ("stdin-data", .stdinData(rank: 0, bytes: Array("input\n".utf8))), ("stdin-end", .stdinData(rank: 0, bytes: [])),
            ("output", .output(rank: 0, stream: 1, timestamp: 1_700_000_000, bytes: Array("line\n".utf8))),
            ("rank-exited", .rankExited(rank: 0, status: .exited(3), endedByDistr: false)),
            ("rank-signaled", .rankExited(rank: 1, status: .signaled(9), endedByDistr: true)),
            ("rank-failed-to-start", .rankExited(rank: 2, status: .failedToStart("no such file"), endedByDistr: false)),
            ("job-ended", .jobEnded(keptDirectory: nil)), ("job-ended-kept", .jobEnded(keptDirectory: "/tmp/kept")),
            ("failure", .failure("bundle refused")), ("files-needed", .filesNeeded([0, 2])),
            ("file-digests", .fileDigests([FileDigest(index: 2, digest: [UInt8](repeating: 6, count: 32))])),
            ("status-request", .statusRequest(sentAt: 1_700_000_000_000_000_000)),
            (
                "status-report",
                .statusReport(
                    StatusReport(
                        distrVersion: "0.1.0", protocolVersion: Handshake.version, hostName: "rpi-0", operatingSystem: "Linux 6.1.0",
                        architecture: "aarch64", cores: 4, loadMilli: [1520, 800, 50], freeMemoryBytes: 1 << 30, workDirectory: "/tmp",
                        freeDiskBytes: 1 << 34, runningJobs: 1, maxJobs: 2, masterAddress: "10.0.0.1:51234", receivedAt: 1_700_000_000_000_000_100,
                        sentAt: 1_700_000_000_000_000_200))
            ),
            ("job-queued", .jobQueued(running: 1, maxJobs: 1, holders: ["10.0.0.1:51234"])),
        ]
    }

    /// `.box(.box(... .empty))`, `depth` levels, without recursion.
    static func deeplyNestedTree(depth: Int) -> [UInt8] {
        let encoder = BinaryEncoder()
        guard let leaf = try? encoder.encode(FuzzTree.empty), let one = try? encoder.encode(FuzzTree.box(.empty)),  // Cannot fail; no seed if it did.
            one.count > leaf.count, one.suffix(leaf.count).elementsEqual(leaf)
        else { return [] }
        let level = one.prefix(one.count - leaf.count)
        var out: [UInt8] = []
        out.reserveCapacity(level.count * depth + leaf.count)
        for _ in 0..<depth { out += level }
        return out + leaf
    }
}
