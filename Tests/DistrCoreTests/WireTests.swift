import Glibc
import Synchronization
import Testing

@testable import DistrCore

@Suite struct WireTests {
    static let keys = SessionKeys(send: Array(repeating: 1, count: 32), receive: Array(repeating: 2, count: 32))
    static let mirrored = SessionKeys(send: keys.receive, receive: keys.send)

    func sealed(_ payloads: [[UInt8]], type: UInt8 = 7) -> [UInt8] {
        var sealer = FrameSealer(keys: Self.keys)
        return payloads.flatMap { sealer.seal(type: type, payload: $0) }
    }

    @Test func decoder_yieldsSameFramesForSplitsAtEveryByteBoundary() throws {
        let payloads: [[UInt8]] = [[], [1, 2, 3], Array(repeating: 9, count: 300)]
        let stream = sealed(payloads)
        for split in 0...stream.count {
            var decoder = FrameDecoder(maxPayload: 1024)
            var opener = FrameSealer(keys: Self.mirrored)
            var got: [[UInt8]] = []
            for part in [Array(stream[0..<split]), Array(stream[split...])] {
                decoder.append(part)
                while let frame = try decoder.next() {
                    try opener.open(frame)
                    got.append(frame.payload)
                }
            }
            #expect(got == payloads, "split at \(split)")
            #expect(decoder.bufferedBytes == 0)
        }
    }

    @Test func decoder_yieldsFramesFedOneByteAtATime() throws {
        let stream = sealed([[5], [6, 7]])
        var decoder = FrameDecoder(maxPayload: 16)
        var count = 0
        for byte in stream {
            decoder.append([byte])
            while try decoder.next() != nil { count += 1 }
        }
        #expect(count == 2)
    }

    /// A frame sealed in place around its payload is the frame `seal` makes: the same bytes,
    /// and the sequence goes on across both kinds.
    @Test func sealInPlace_makesTheSameFramesAsSeal() {
        var copying = FrameSealer(keys: Self.keys)
        var inPlace = FrameSealer(keys: Self.keys)
        for payload in [[], [1, 2, 3], Array(repeating: 9, count: 300)] as [[UInt8]] {
            var frame = [UInt8](repeating: 0xAA, count: FrameDecoder.headerSize) + payload + [UInt8](repeating: 0xBB, count: FrameDecoder.macSize)
            let size = frame.withUnsafeMutableBytes { inPlace.sealInPlace(type: 11, frame: $0, payloadCount: payload.count) }
            #expect(size == frame.count)
            #expect(frame == copying.seal(type: 11, payload: payload))
        }
    }

    /// Rank output sent in place (`OutputFrame`) is an ordinary `.output` message to the master.
    @Test func outputFrame_decodesAsTheOutputMessage() throws {
        let bytes = Array("line one\nline two\n".utf8)
        var frame = [UInt8](repeating: 0, count: OutputFrame.headroom) + bytes + [UInt8](repeating: 0, count: OutputFrame.tailroom)
        var sealer = FrameSealer(keys: Self.keys)
        let size = frame.withUnsafeMutableBytes { raw in
            OutputFrame.writeHeader(into: raw, rank: 5, stream: 2, timestamp: 1_234_567_890)
            return sealer.sealInPlace(type: OutputFrame.type, frame: raw, payloadCount: OutputFrame.payloadHeader + bytes.count)
        }
        var decoder = FrameDecoder(maxPayload: 1024)
        decoder.append(Array(frame[0..<size]))
        let raw = try #require(try decoder.next())
        var opener = FrameSealer(keys: Self.mirrored)
        try opener.open(raw)
        #expect(
            try ControlMessage.decode(type: raw.type, payload: raw.payload) == .output(rank: 5, stream: 2, timestamp: 1_234_567_890, bytes: bytes))
    }

    /// A file the kernel cannot send from (`/proc`'s files refuse `sendfile` with EINVAL, as
    /// some FUSE file systems do) is read and written instead, between pieces that are sent
    /// from a regular file: the frame arrives whole, with every file's bytes in order.
    @Test func sendFromFiles_copiesAFileTheKernelCannotSendFrom() throws {
        let special = try FileDescriptor.open("/proc/self/environ", .readOnly).release()
        defer { FD.close(special) }
        var environment = try FileIO.readAll("/proc/self/environ")
        environment = Array(environment.prefix(3 * Connection.copyBufferSize))
        try #require(!environment.isEmpty)
        let (probe, sink) = try FD.socketPair()
        defer {
            FD.close(probe)
            FD.close(sink)
        }
        #expect(throws: SystemError.self, "the premise: sendfile refuses this file") {
            _ = try FD.sendFile(from: special, at: 0, count: 1, to: probe)
        }
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let regular = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try FileIO.write(dir + "/regular", regular, mode: 0o644, exclusive: true)
        let file = try FileDescriptor.open(dir + "/regular", .readOnly).release()
        defer { FD.close(file) }
        let (masterEnd, workerEnd) = try FD.socketPair()
        let type = ControlMessage.fileDataType
        let master = Connection(fd: masterEnd, peer: "w", keys: Self.keys, maxPayload: 1 << 20, headerOnlyTypes: [type], frameTimeout: 5)
        let worker = Connection(fd: workerEnd, peer: "m", keys: Self.mirrored, maxPayload: 1 << 20, headerOnlyTypes: [type], frameTimeout: 5)
        defer {
            master.close()
            worker.close()
        }
        let pieces = [
            (fd: file, offset: 10, count: 1000), (fd: special, offset: 0, count: environment.count),
            (fd: file, offset: 50_000, count: 50_000),
        ]
        // Sent from another thread: the frame is larger than the socket pair's buffer.
        let sent = Mutex<Result<Result<Int?, FileReadFailure>, SystemError>?>(nil)
        let done = Latch()
        Threads.start(name: "test-send") {
            let result = Result { () throws(SystemError) in try master.sendFromFiles(type: type, pieces: pieces) }
            sent.withLock { $0 = result }
            done.open()
        }
        let payload = try worker.receive(idle: .after(30)).payload
        #expect(done.wait(until: .after(30)))
        guard case .success(.success(nil)) = sent.withLock({ $0 }) else {
            Issue.record("sendFromFiles did not send every piece whole")
            return
        }
        #expect(payload == Array(regular[10..<1010]) + environment + Array(regular[50_000...]))
    }

    /// A large batch leaves the worker as two frames split after a line end and sealed
    /// together; the master's side of a real connection reads both, checks them two at a
    /// time, and gets every byte back in order, each frame whole lines under the rank's header.
    @Test func outputFrame_largeBatch_goesAsTwoFramesOfWholeLines_readBackByReceiveFrames() throws {
        let lines = (0..<2000).map { "rank 3 line \($0) " + String(repeating: "x", count: 20) + "\n" }
        let bytes = Array(lines.joined().utf8)
        #expect(bytes.count >= OutputFrame.splitSize)
        var frame = [UInt8](repeating: 0, count: OutputFrame.headroom) + bytes + [UInt8](repeating: 0, count: OutputFrame.tailroom)
        let (workerEnd, masterEnd) = try FD.socketPair()
        let worker = Connection(fd: workerEnd, peer: "m", keys: Self.keys, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        let master = Connection(fd: masterEnd, peer: "w", keys: Self.mirrored, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        defer {
            worker.close()
            master.close()
        }
        for _ in 0..<2 {
            try frame.withUnsafeMutableBytes { raw in
                try OutputFrame.send(raw, count: bytes.count, rank: 3, stream: 1, timestamp: 7, over: worker)
            }
        }
        try worker.send(.heartbeat)
        var outputs: [[UInt8]] = []
        var sawEnd = false
        while !sawEnd {
            try master.receiveFrames(idle: .after(30)) { type, payload in
                guard type == OutputFrame.type else {
                    sawEnd = true
                    return
                }
                let output = try #require(OutputFrame.parse(payload))
                #expect(output.rank == 3 && output.stream == 1 && output.timestamp == 7)
                outputs.append(Array(output.bytes))
            }
        }
        #expect(outputs.count == 4, "each batch goes as two frames")
        #expect(outputs.allSatisfy { $0.last == 10 }, "a frame ends inside a line")
        #expect(Array(outputs.joined()) == bytes + bytes)
    }

    /// Pairs of frames sealed and opened together are the frames sealed and opened one at a
    /// time: same bytes, same sequence, whichever way the other side works.
    @Test func sealer_pairsMatchSingleFrames_andAPairWithAForgedSecondOpensOnlyTheFirst() throws {
        let payloads: [[UInt8]] = [Array(repeating: 1, count: 5000), [], Array(repeating: 2, count: 64), Array(repeating: 3, count: 130)]
        let single = sealed(payloads)
        var pairSealer = FrameSealer(keys: Self.keys)
        var paired: [UInt8] = []
        for index in stride(from: 0, to: payloads.count, by: 2) {
            var (headerA, headerB) = ([UInt8](repeating: 0, count: FrameDecoder.headerSize), [UInt8](repeating: 0, count: FrameDecoder.headerSize))
            var (macA, macB) = ([UInt8](repeating: 0, count: FrameDecoder.macSize), [UInt8](repeating: 0, count: FrameDecoder.macSize))
            let (a, b) = (payloads[index], payloads[index + 1])
            // Each payload split into a head and a body, as the output frames are.
            let (cutA, cutB) = (min(17, a.count), min(17, b.count))
            headerA.withUnsafeMutableBytes { headerA in
                headerB.withUnsafeMutableBytes { headerB in
                    macA.withUnsafeMutableBytes { macA in
                        macB.withUnsafeMutableBytes { macB in
                            a.withUnsafeBytes { a in
                                b.withUnsafeBytes { b in
                                    pairSealer.seal(
                                        (
                                            7, headerA, UnsafeRawBufferPointer(rebasing: a[0..<cutA]), UnsafeRawBufferPointer(rebasing: a[cutA...]),
                                            macA
                                        ),
                                        (
                                            7, headerB, UnsafeRawBufferPointer(rebasing: b[0..<cutB]), UnsafeRawBufferPointer(rebasing: b[cutB...]),
                                            macB
                                        ))
                                }
                            }
                        }
                    }
                }
            }
            paired += headerA + a + macA + headerB + b + macB
        }
        #expect(paired == single)

        var decoder = FrameDecoder(maxPayload: 1 << 16)
        decoder.append(single)
        var spans: [FrameSpan] = []
        while let span = try decoder.nextSpan() { spans.append(span) }
        #expect(spans.map(\.payloadCount) == payloads.map(\.count))
        var opener = FrameSealer(keys: Self.mirrored)
        try decoder.withBuffer { (buffer: UnsafeRawBufferPointer) throws in
            for index in stride(from: 0, to: spans.count, by: 2) {
                let (a, b) = (spans[index].parts(in: buffer), spans[index + 1].parts(in: buffer))
                #expect(try opener.open((7, a.payload, a.mac), (7, b.payload, b.mac)) == 2)
            }
        }
        // Opened in pairs, the sequence goes on as for single frames.
        var more = FrameSealer(keys: Self.keys)
        for payload in payloads { _ = more.seal(type: 7, payload: payload) }
        try opener.open(
            try #require(
                try {
                    var d = FrameDecoder(maxPayload: 64); d.append(more.seal(type: 7, payload: [9])); return try d.next()
                }()))

        // A forged second frame: the first still opens, the second does not.
        var forged = single
        forged[forged.count - 1] ^= 1
        var fresh = FrameDecoder(maxPayload: 1 << 16)
        fresh.append(forged)
        var fresher = FrameSealer(keys: Self.mirrored)
        var all: [FrameSpan] = []
        while let span = try fresh.nextSpan() { all.append(span) }
        try fresh.withBuffer { (buffer: UnsafeRawBufferPointer) throws in
            let (a, b) = (all[0].parts(in: buffer), all[1].parts(in: buffer))
            #expect(try fresher.open((7, a.payload, a.mac), (7, b.payload, b.mac)) == 2)
            let (c, d) = (all[2].parts(in: buffer), all[3].parts(in: buffer))
            #expect(try fresher.open((7, c.payload, c.mac), (7, d.payload, d.mac)) == 1)
            #expect(throws: WireError.badMAC) { try fresher.open((7, d.payload, d.mac), (7, d.payload, d.mac)) }
        }
    }

    /// `receiveFrames` hands over the good frames before a forged one, then reports it.
    @Test func receiveFrames_deliversTheFramesBeforeAForgedOne_thenThrows() throws {
        var stream = sealed([[1], [2], [3]])
        stream[stream.count - 1] ^= 1
        let (wire, end) = try FD.socketPair()
        defer { FD.close(wire) }
        let master = Connection(fd: end, peer: "w", keys: Self.mirrored, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        defer { master.close() }
        try FD.writeAll(wire, stream)
        var got: [[UInt8]] = []
        #expect(throws: WireError.badMAC) {
            while true { try master.receiveFrames(idle: .after(30)) { got.append(Array($1)) } }
        }
        #expect(got == [[1], [2]])
    }

    /// `close` on one thread while another is in a system call on the socket shuts the socket
    /// down at once (the peer reads end of stream, later sends fail) but releases the descriptor
    /// only when that call has returned: its number cannot go to another file while the call
    /// may still read or write it.
    @Test func close_releasesTheDescriptorOnlyWhenNoCallIsUsingIt() throws {
        let (wire, end) = try FD.socketPair()
        defer { FD.close(wire) }
        let socket = Self.openFile(end)
        let connection = Connection(fd: end, peer: "w", keys: Self.keys, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        let inUse = Latch()
        let proceed = Latch()
        let returned = Latch()
        Threads.start(name: "test-descriptor-user") {
            _ = connection.usingDescriptor {
                inUse.open()
                proceed.wait(until: .after(600))
            }
            returned.open()
        }
        #expect(inUse.wait(until: .after(600)))
        connection.close()
        var byte: [UInt8] = [0]
        #expect(try FD.read(wire, into: &byte) == 0, "the peer reads end of stream at once")
        #expect(throws: SystemError.self) { try connection.send(type: 1, payload: [1]) }
        #expect(Self.openFile(end) == socket, "released while a call was using it")
        proceed.open()
        #expect(returned.wait(until: .after(600)))
        #expect(Self.openFile(end) != socket, "not released when the last call returned")
        connection.close()
    }

    /// The inode `fd` refers to, nil when it is not open. Tests run in parallel in one process:
    /// once released, the number may at once name a file another test opened, so "released" is
    /// "no longer this socket", not "not open".
    static func openFile(_ fd: Int32) -> ino_t? {
        var info = stat()
        return fstat(fd, &info) == 0 ? info.st_ino : nil
    }

    /// A connection closed while nothing uses it releases its descriptor at once.
    @Test func close_releasesAnUnusedDescriptorAtOnce() throws {
        let (wire, end) = try FD.socketPair()
        defer { FD.close(wire) }
        let socket = Self.openFile(end)
        let connection = Connection(fd: end, peer: "w", keys: Self.keys, maxPayload: 1 << 20, headerOnlyTypes: [], frameTimeout: 5)
        connection.close()
        #expect(Self.openFile(end) != socket)
        #expect(connection.peerHasLeft)
        #expect(throws: WireError.closed) { _ = try connection.receive() }
    }

    /// Bytes read straight into the decoder (`fill`) across many reads, with frames larger
    /// than the first buffer, come out as the frames that went in.
    @Test func decoder_fill_movesPartialFramesAndGrows() throws {
        let payloads: [[UInt8]] = (0..<40).map { [UInt8](repeating: UInt8($0), count: ($0 * 7919) % 3000) }
        let stream = sealed(payloads)
        var decoder = FrameDecoder(maxPayload: 1 << 16, capacity: 1000)
        var offset = 0
        var got: [[UInt8]] = []
        var opener = FrameSealer(keys: Self.mirrored)
        while offset < stream.count {
            let n = decoder.fill(minimum: 100) { space in
                let n = min(space.count, 333, stream.count - offset)
                stream.withUnsafeBytes { space.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + n])) }
                return n
            }
            offset += n
            while let frame = try decoder.next() {
                try opener.open(frame)
                got.append(frame.payload)
            }
        }
        #expect(got == payloads)
        #expect(decoder.bufferedBytes == 0)
    }

    @Test func decoder_rejectsFrameLargerThanLimitBeforeReadingIt() {
        var decoder = FrameDecoder(maxPayload: 100)
        decoder.append([0x7f, 0xff, 0xff, 0xff, 1])
        #expect(throws: WireError.frameTooLarge(size: 0x7fff_ffff, limit: 100)) { try decoder.next() }
    }

    @Test func opener_rejectsTamperedPayload() throws {
        var stream = sealed([[1, 2, 3]])
        stream[6] ^= 0x40
        var decoder = FrameDecoder(maxPayload: 64)
        decoder.append(stream)
        let frame = try #require(try decoder.next())
        var opener = FrameSealer(keys: Self.mirrored)
        #expect(throws: WireError.badMAC) { try opener.open(frame) }
    }

    @Test func opener_rejectsReplayedAndReorderedFrames() throws {
        var sealer = FrameSealer(keys: Self.keys)
        let first = sealer.seal(type: 1, payload: [1])
        let second = sealer.seal(type: 1, payload: [2])
        var decoder = FrameDecoder(maxPayload: 64)
        decoder.append(first + first)
        var opener = FrameSealer(keys: Self.mirrored)
        try opener.open(try #require(try decoder.next()))
        #expect(throws: WireError.badMAC) { try opener.open(try #require(try decoder.next())) }

        var reordered = FrameDecoder(maxPayload: 64)
        reordered.append(second + first)
        var fresh = FrameSealer(keys: Self.mirrored)
        #expect(throws: WireError.badMAC) { try fresh.open(try #require(try reordered.next())) }
    }

    @Test func opener_rejectsFrameReflectedBackToItsSender() throws {
        var sealer = FrameSealer(keys: Self.keys)
        let frame = sealer.seal(type: 1, payload: [1])
        var decoder = FrameDecoder(maxPayload: 64)
        decoder.append(frame)
        // The sender's own receive key is the other direction's.
        var sameSide = FrameSealer(keys: Self.keys)
        #expect(throws: WireError.badMAC) { try sameSide.open(try #require(try decoder.next())) }
    }

    @Test func opener_headerOnlyTypeStillBindsTypeAndLength() throws {
        var sealer = FrameSealer(keys: Self.keys, headerOnlyTypes: [2])
        var frame = sealer.seal(type: 2, payload: [1, 2, 3])
        frame[4] = 3  // change the type
        var decoder = FrameDecoder(maxPayload: 64)
        decoder.append(frame)
        var opener = FrameSealer(keys: Self.mirrored, headerOnlyTypes: [2])
        #expect(throws: WireError.badMAC) { try opener.open(try #require(try decoder.next())) }
    }

    @Test func controlMessages_roundTrip() throws {
        let spec = JobSpec(
            jobID: "abc", arguments: ["./p", "x y"], environment: ["A=1"], localRanks: [0, 2],
            placements: [RankPlacement(rank: 0, host: "::1", port: 6969, worker: 0, label: "[::1]:6969")],
            keepDirectory: true, jobKey: [1, 2], manifest: [ManifestEntry(path: "a/b", mode: 0o755, size: 3, digest: [9])],
            workerIndex: 1)
        let messages: [ControlMessage] = [
            .jobStart(spec), .fileData([1, 2]), .cancel(reason: "r"), .peerExited(rank: 3, status: 137),
            .jobReady(directory: "/d"), .launch, .output(rank: 1, stream: 2, timestamp: 99, bytes: [0xff, 10]),
            .rankExited(rank: 1, status: .signaled(9), endedByDistr: true), .rankExited(rank: 2, status: .failedToStart("x"), endedByDistr: false),
            .jobEnded(keptDirectory: nil), .jobEnded(keptDirectory: "/k"), .failure("f"),
        ]
        for message in messages {
            #expect(try ControlMessage.decode(type: message.type, payload: message.encoded()) == message)
        }
    }

    @Test func controlMessages_rejectTruncatedAndUnknown() {
        let bytes = ControlMessage.cancel(reason: "hello").encoded()
        #expect(throws: WireError.truncated) { try ControlMessage.decode(type: 3, payload: Array(bytes.dropLast())) }
        #expect(throws: WireError.truncated) { try ControlMessage.decode(type: 3, payload: bytes + [0]) }
        #expect(throws: WireError.unknownMessage(type: 99)) { try ControlMessage.decode(type: 99, payload: []) }
        // A count field claiming more elements than bytes left must not allocate or crash.
        var w = ByteWriter()
        w.string("job")
        w.u32(0xffff_ffff)
        #expect(throws: WireError.truncated) { try ControlMessage.decode(type: 1, payload: w.bytes) }
    }

    @Test func agentMessages_roundTrip() throws {
        let messages: [AgentMessage] = [
            .hello(rank: 1), .welcome(jobID: "j", jobKey: [1], workerIndex: 2, placements: []), .connectLocal(to: 3),
            .connected(to: 3, error: ""), .incoming(from: 4), .peerExited(rank: 5, status: 1), .abort(reason: "x"),
        ]
        for message in messages { #expect(try AgentMessage.decode(message.encoded()) == message) }
    }
}
