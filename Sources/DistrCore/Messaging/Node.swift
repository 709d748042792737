import Synchronization

/// One rank of a distr job: its identity and its messages to and from the other ranks.
///
/// ```swift
/// let node = try await Node.join()
/// try await node.send("hello", to: (node.id + 1) % node.count)
/// let text = try await node.recv(String.self, from: (node.id + node.count - 1) % node.count)
/// try await node.leave()
/// ```
///
/// Sends are buffered: `send` returns once the message is handed to the kernel or to a writer
/// thread, never waiting for the receiver to call `recv`. Messages from one rank to another
/// arrive in the order they were sent. Connections are made on first use: through the worker's
/// agent channel for ranks on the same worker (a shared-memory ring with a Unix socket pair beside
/// it as doorbell, or the socket pair alone), or by dialing the other
/// rank's worker on its one port and authenticating with the job key (the worker hands the socket
/// to the target rank).
public final class Node: Sendable {
    /// This rank's number, 0..<count.
    public let id: Int
    /// Number of ranks in the job.
    public let count: Int
    public let jobID: String
    let jobKey: [UInt8]
    let workerIndex: Int
    let placements: [RankPlacement]
    let agentFD: Int32
    /// The largest payload accepted from another rank (`DISTR_MAX_MESSAGE_BYTES`).
    let maxMessageBytes: Int
    /// Whether collectives offer large arrays to ranks on this worker (`DISTR_SINGLE_COPY`).
    let singleCopy: SingleCopyMode
    let mailbox: Mailbox
    let progress: ProgressThread
    let pool = BufferPool()
    let collectiveCounter = Atomic<Int>(0)
    let singleCopyCounts = Atomic<Int>(0)
    /// The root's copy of a broadcast array (a shared segment, or huge pages), kept between broadcasts.
    let staging = BroadcastStaging()
    /// Other roots' broadcast segments this rank has mapped to read from.
    let mappedRegions = MappedRegions()
    /// Arrays `send` offered (single copy) that wait for their receiver's answer.
    let offeredSends = OfferedSends()
    /// Ranks of this worker that read memory offers (the worker said so with `readsOffers`).
    let offerReaders = Mutex<Set<Int>>([])
    /// Each rank's link, by rank (an array: a dictionary hashes the rank on every send).
    let links: Mutex<[LinkSlot?]>
    /// Whether receives spin before parking (and sends before handing over to a writer thread).
    let spin: Mutex<SpinPolicy>
    let hasLeft = Atomic<Bool>(false)
    private static let current = Mutex<Node?>(nil)

    enum LinkSlot {
        case ready(OutgoingLink)
        /// A connection to a rank of this worker, asked of the worker.
        case connecting([CheckedContinuation<OutgoingLink, any Error>])
        /// A rank of another worker: which connection to send on is being chosen (`LinkChoice`).
        case negotiating(Negotiation)
        case failed(NodeError)
    }

    /// The state of a `LinkChoice` and the descriptors it chooses between.
    struct Negotiation {
        var choice: LinkChoice
        var waiting: [CheckedContinuation<OutgoingLink, any Error>]
        /// This rank's dial once it is up (read too when it said `bothWays`).
        var ownFD: Int32?
        /// A copy of the peer's dial, while it may be taken.
        var peersFD: Int32?
        /// The peer's dial whose `bothWays` waits for this rank's own dial (`LinkChoice.answerOwed`).
        var owesAnswer: IncomingChannel?
        /// Opened when the choice settles (the dial's thread waits on it).
        var decided: Latch?

        init(choice: LinkChoice, waiting: [CheckedContinuation<OutgoingLink, any Error>]) {
            self.choice = choice
            self.waiting = waiting
        }
    }

    init(
        id: Int, count: Int, jobID: String, jobKey: [UInt8], workerIndex: Int, placements: [RankPlacement], agentFD: Int32,
        maxMessageBytes: Int = RankFrameDecoder.defaultMaxMessageBytes, singleCopy: SingleCopyMode = .on
    ) throws(SystemError) {
        self.singleCopy = singleCopy
        self.id = id
        self.count = count
        self.jobID = jobID
        self.jobKey = jobKey
        self.workerIndex = workerIndex
        self.placements = placements
        self.agentFD = agentFD
        self.maxMessageBytes = maxMessageBytes
        mailbox = Mailbox(selfRank: id, count: count)
        links = Mutex([LinkSlot?](repeating: nil, count: count))
        let localRanks = placements.isEmpty ? 1 : placements.filter { $0.worker == workerIndex }.count
        spin = Mutex(SpinPolicy(budget: Self.spinBudget, localRanks: localRanks, cores: SystemFacts.usableCores))
        progress = try ProgressThread(mailbox: mailbox)
    }

    /// Joins the job this process was started for, using the environment and the agent channel
    /// that `distr-worker` gave it. Calling it again returns the same node.
    ///
    /// `DISTR_MAX_MESSAGE_BYTES` (a byte count, default 1 GiB) sets the largest message this rank
    /// accepts from another: a larger one closes the connection from that rank, and receives from
    /// it fail with an error naming it. `DISTR_TRANSPORT=socket` makes ranks on the same worker
    /// talk over Unix sockets instead of shared-memory rings (`shm`, the default).
    /// `DISTR_SINGLE_COPY=off` stops collectives from reading large arrays straight out of the
    /// memory of ranks on the same worker, and `send` from writing arrays of 8 MiB or more into
    /// theirs (`on`, the default; `refuse` offers but never takes an offer that way, which
    /// exercises the fallback).
    ///
    /// A program run without distr-master should let `Node.run` report this error (one line on
    /// stderr, exit 1) rather than let a top-level `try` crash with a backtrace.
    /// - Throws: `NodeError.notLaunchedByDistr` when the program was not started by distr,
    ///   `.badArgument` when `DISTR_MAX_MESSAGE_BYTES` is not a positive byte count or
    ///   `DISTR_TRANSPORT` names no transport.
    public static func join() async throws -> Node {
        if let node = current.withLock({ $0 }) { return node }
        let environment = Environment.all
        for name in ["DISTR_NODE_ID", "DISTR_N_NODE", "DISTR_AGENT_FD"] where environment[name] == nil {
            throw NodeError.notLaunchedByDistr(missing: name)
        }
        let maxMessageBytes = try messageLimit(environment["DISTR_MAX_MESSAGE_BYTES"])
        let sharedMemory = try usesSharedMemory(environment["DISTR_TRANSPORT"])
        let singleCopy = try SingleCopyMode.parse(environment["DISTR_SINGLE_COPY"])
        guard let id = environment["DISTR_NODE_ID"].flatMap({ Int($0) }), let count = environment["DISTR_N_NODE"].flatMap({ Int($0) }),
            count > 0, (0..<count).contains(id)
        else {
            throw NodeError.badAgentChannel("DISTR_NODE_ID and DISTR_N_NODE do not name a rank of the job")
        }
        guard let fd = environment["DISTR_AGENT_FD"].flatMap({ Int32($0) }) else {
            throw NodeError.badAgentChannel("DISTR_AGENT_FD is not a descriptor number")
        }
        guard (try? FileStatus(descriptor: fd).kind) == .socket else {  // not open: not the channel either
            throw NodeError.badAgentChannel("descriptor \(fd) is not the socket distr-worker passed")
        }
        // Programs this rank starts must not inherit the channel.
        do { try FD.setCloseOnExec(fd) } catch { throw NodeError.badAgentChannel("descriptor \(fd): \(error)") }
        // A send to a rank that has gone must fail with `sendFailed`, not end this process.
        Signals.ignorePipeUnlessHandled()
        // Other ranks may connect before the welcome arrives: keep what comes first for later.
        let (welcome, early) = try await onDedicatedThread(name: "distr-join") { () throws -> (AgentMessage, [EarlyMessage]) in
            try AgentChannel.send(fd, sharedMemory ? .helloReadingOffers(rank: id) : .helloAnswering(rank: id))
            var early: [EarlyMessage] = []
            while true {
                guard let (message, extra) = try AgentChannel.receive(fd) else {
                    throw NodeError.badAgentChannel("the worker closed the channel")
                }
                if case .welcome = message {
                    for descriptor in extra { FD.close(descriptor) }
                    return (message, early)
                }
                early.append(EarlyMessage(message: message, fds: extra))
            }
        }
        guard case .welcome(let jobID, let jobKey, let workerIndex, let placements) = welcome, placements.count == count else {
            throw NodeError.badAgentChannel("unexpected answer from the worker")
        }
        let node = try Node(
            id: id, count: count, jobID: jobID, jobKey: jobKey, workerIndex: workerIndex, placements: placements, agentFD: fd,
            maxMessageBytes: maxMessageBytes, singleCopy: singleCopy)
        let existing = current.withLock { slot -> Node? in
            if let existing = slot { return existing }
            slot = node
            return nil
        }
        if let existing { return existing }
        for item in early { node.handleAgentMessage(item.message, fds: item.fds) }
        node.startAgentReader()
        return node
    }

    /// The message size limit `DISTR_MAX_MESSAGE_BYTES` sets (the default when unset).
    /// - Throws: `NodeError.badArgument` when the text is not a whole number of bytes, 1 or more.
    static func messageLimit(_ text: String?) throws(NodeError) -> Int {
        guard let text else { return RankFrameDecoder.defaultMaxMessageBytes }
        guard let limit = Int(text), limit > 0 else {
            throw .badArgument("DISTR_MAX_MESSAGE_BYTES=\(text) is not a byte count (a whole number, 1 or more)")
        }
        return limit
    }

    /// Whether connections to ranks on the same worker use shared memory (`DISTR_TRANSPORT`:
    /// unset or `shm`), or Unix sockets only (`socket`).
    /// - Throws: `NodeError.badArgument` for any other value.
    static func usesSharedMemory(_ text: String?) throws(NodeError) -> Bool {
        switch text {
        case nil, "", "shm": return true
        case "socket": return false
        case let other?: throw .badArgument("DISTR_TRANSPORT=\(other) is not a transport (shm, the default, or socket)")
        }
    }

    struct EarlyMessage: Sendable {
        var message: AgentMessage
        var fds: [Int32]
    }

    /// Joins, runs `body`, leaves, and exits. An error is printed on stderr as one line,
    /// `rank N: message` (`distr: message` when joining failed), and the process exits 1,
    /// instead of crashing with a backtrace.
    public static func run(_ body: (Node) async throws -> Void) async -> Never {
        var rank = "distr"
        do {
            let node = try await join()
            rank = "rank \(node.id)"
            try await body(node)
            try await node.leave()
            CurrentProcess.exit(0)
        } catch {
            CurrentProcess.printError("\(rank): \(error)\n")
            CurrentProcess.exit(1)
        }
    }

    // MARK: Sending

    /// Sends a value to a rank. Arrays of plain numeric types go as raw memory; other values
    /// with the compact binary coder.
    /// - Throws: `NodeError.badRank`, `.badTag`, `.connectFailed`, `.sendFailed`.
    public func send<T: Encodable & Sendable>(_ value: T, to rank: Int, tag: Int = 0) async throws {
        try check(rank: rank)
        try check(tag: tag)
        // Not through `post`: one `async` layer fewer on the way to the fast path.
        let (frame, body) = try Self.message(value, tag: tag)
        if case .numeric(let array) = body, body.count >= Self.offeredSendThreshold, rank != id, !hasLeft.load(ordering: .acquiring),
            try await offerIfLarge(array, to: rank, tag: tag)
        {
            return
        }
        let now = try sendNow(frame, body, to: rank)
        if now.wentWhole { return }
        if try await now.completed() { return }
        try await post(frame: frame, body: body, to: rank)
    }

    /// Sends a numeric array: the same as the generic `send`, without finding the array's type
    /// among the others at run time (the common case of a message, on its fast path).
    public func send<Element: RawNumeric>(_ array: [Element], to rank: Int, tag: Int = 0) async throws {
        try check(rank: rank)
        try check(tag: tag)
        // Counted from the element's size, not `rawByteCount`: that goes through the array's
        // conformance, which this unspecialized code would look up at run time (with the
        // array type's metadata) on every send.
        let byteCount = array.count &* MemoryLayout<Element>.stride
        if byteCount >= Self.offeredSendThreshold, rank != id, !hasLeft.load(ordering: .acquiring), try await offerIfLarge(array, to: rank, tag: tag)
        {
            return
        }
        let frame = RankFrame(encoding: .numeric, element: Element.wireCode, tag: tag, length: byteCount)
        let now = try array.withUnsafeBytes { try sendNow(frame, body: $0, to: rank) }
        if now.wentWhole { return }
        if try await now.completed() { return }
        try await post(frame: frame, body: .numeric(array), to: rank)
    }

    /// Sends raw bytes, received with `recvBytes` (or as `[UInt8]`).
    public func send(bytes: [UInt8], to rank: Int, tag: Int = 0) async throws {
        try check(rank: rank)
        try check(tag: tag)
        let frame = RankFrame(encoding: .bytes, tag: tag, length: bytes.count)
        let now = try bytes.withUnsafeBytes { try sendNow(frame, body: $0, to: rank) }
        if now.wentWhole { return }
        if try await now.completed() { return }
        try await post(frame: frame, body: .bytes(bytes), to: rank)
    }

    func post<T: Encodable & Sendable>(_ value: T, to rank: Int, tag: Int) async throws {
        let (frame, body) = try Self.message(value, tag: tag)
        let now = try sendNow(frame, body, to: rank)
        if now.wentWhole { return }
        if try await now.completed() { return }
        try await post(frame: frame, body: body, to: rank)
    }

    /// The frame header and body that carry `value`: a numeric array as raw memory, anything
    /// else in the compact binary coding.
    static func message<T: Encodable & Sendable>(_ value: T, tag: Int) throws -> (RankFrame, FrameBody) {
        if let array = RawNumericTypes.array(value) ?? value as? any RawNumericArray {
            let body = FrameBody.numeric(array)
            return (RankFrame(encoding: .numeric, element: array.rawElementCode, tag: tag, length: body.count), body)
        }
        let bytes = try BinaryEncoder().encode(value)
        return (RankFrame(encoding: .codable, fingerprint: RankFrame.fingerprint(of: T.self), tag: tag, length: bytes.count), .bytes(bytes))
    }

    /// The synchronous fast path of a send, when the link to `rank` is up and idle: writes the
    /// frame into the shared-memory ring when the ring has room for all of it, or writes a small
    /// frame to the socket (`OutgoingLink.writeNow`). `.declined` when it wrote nothing (the
    /// caller goes the `async` way, which also reports every failure).
    func sendNow(_ frame: RankFrame, _ body: FrameBody, to rank: Int) throws -> OutgoingLink.Immediate {
        switch body {
        case .bytes(let bytes): try bytes.withUnsafeBytes { try sendNow(frame, body: $0, to: rank) }
        case .numeric(let array): try array.withRawBytes { try sendNow(frame, body: $0, to: rank) }
        }
    }

    func sendNow(_ frame: RankFrame, body: UnsafeRawBufferPointer, to rank: Int) throws -> OutgoingLink.Immediate {
        guard rank != id, !hasLeft.load(ordering: .acquiring), let link = readyLink(to: rank) else { return .declined }
        if link.hasRing { return try link.sendNow(frame, body: body) ? .sent : .declined }
        return try link.writeNow(frame, body: body)
    }

    func post(frame: RankFrame, body: FrameBody, to rank: Int) async throws {
        if hasLeft.load(ordering: .acquiring) { throw NodeError.left }
        if rank == id {
            switch body {
            case .bytes(let bytes): mailbox.deliver(Envelope(source: id, frame: frame, payload: bytes))
            case .numeric(let array): mailbox.deliver(Envelope(source: id, frame: frame, payload: [], array: array))
            }
            return
        }
        let link = try await link(to: rank)
        try await link.send(header: frame.header(), body: body)
    }

    // MARK: Receiving

    /// Receives the next matching value. `from` is a rank or `.any`; `tag` a tag or `.any`.
    /// - Throws: `NodeError.typeMismatch` when the message holds another type, `.pickledValue`
    ///   when a Python rank sent a value that has no Swift equivalent,
    ///   `.peerExited` when the sender has exited with nothing pending, `.aborted`.
    public func recv<T: Decodable & Sendable>(
        _ type: T.Type, from source: some RankSelector = Source.any, tag: some TagSelector = Tag.any
    ) async throws -> T {
        // Not through `recvMessage`: its generic `Received<T>` has its type metadata looked up
        // at run time on every call.
        if let rank = source.rankFilter { try check(rank: rank) }
        if let tag = tag.tagFilter { try check(tag: tag) }
        // The synchronous part first, not through `envelope`: one `async` layer fewer when the
        // message is there or comes while this receive spins or sleeps on its ring.
        let envelope: Envelope
        if let now = envelopeNow(source: source.rankFilter, tag: tag.tagFilter) {
            envelope = now
        } else {
            envelope = try await parkedEnvelope(source: source.rankFilter, tag: tag.tagFilter)
        }
        // A large array from a rank of this worker may come as an offer to be taken. (Apart, not
        // one call with a conditional argument: that copies the envelope, and destroys the copy.)
        if envelope.frame.kind == RankFrame.offer { return try Self.decode(type, try await takeOffered(envelope)) }
        return try Self.decode(type, envelope)
    }

    /// Like `recv`, and also says which rank and tag the message came with.
    public func recvMessage<T: Decodable & Sendable>(
        _ type: T.Type, from source: some RankSelector = Source.any, tag: some TagSelector = Tag.any
    ) async throws -> Received<T> {
        if let rank = source.rankFilter { try check(rank: rank) }
        if let tag = tag.tagFilter { try check(tag: tag) }
        let envelope = try await userEnvelope(source: source.rankFilter, tag: tag.tagFilter)
        return Received(value: try Self.decode(type, envelope), source: envelope.source, tag: envelope.frame.tag)
    }

    /// Receives a numeric array into `buffer`, and keeps `buffer`'s old storage to receive a later
    /// message of the same type and length into. Receiving large arrays repeatedly this way
    /// reuses memory instead of faulting in fresh pages for every message (the MPI way of
    /// receiving into a caller's buffer).
    /// - Returns: the source and tag of the message.
    @discardableResult
    public func recv<Element: RawNumeric>(
        into buffer: inout [Element], from source: some RankSelector = Source.any, tag: some TagSelector = Tag.any
    ) async throws -> (source: Int, tag: Int) {
        // The old storage is offered before waiting, so that a message arriving meanwhile is
        // read straight into it. (`buffer` is empty if the receive throws.)
        pool.give(buffer)
        buffer = []
        let message = try await recvMessage([Element].self, from: source, tag: tag)
        buffer = message.value
        return (message.source, message.tag)
    }

    /// Receives a message's payload as bytes, whatever its encoding.
    public func recvBytes(from source: some RankSelector = Source.any, tag: some TagSelector = Tag.any) async throws -> Received<[UInt8]> {
        if let rank = source.rankFilter { try check(rank: rank) }
        if let tag = tag.tagFilter { try check(tag: tag) }
        let envelope = try await userEnvelope(source: source.rankFilter, tag: tag.tagFilter)
        return Received(value: envelope.bytes, source: envelope.source, tag: envelope.frame.tag)
    }

    /// Receive on a collective's own (negative) tag.
    func take<T: Decodable & Sendable>(_ type: T.Type, from rank: Int, tag: Int) async throws -> T {
        try Self.decode(type, try await envelope(source: rank, tag: tag))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ envelope: Envelope) throws -> T {
        // The common case first: a numeric array that arrived as the very type asked for (its
        // element code is the one the frame named). The general path casts to a protocol, which
        // looks up a conformance at run time, several times the work.
        // (Tested and cast apart: a `T?` made here, in code that is not specialized for `T`,
        // looks up `Optional<T>`'s metadata in the runtime on every receive, about 350
        // instructions.)
        // (The array is read where its box holds it: `envelope.array` would copy it out, through
        // the existential's value witnesses.)
        if envelope.frame.encoding == .numeric, let held = envelope.held, RawNumericTypes.isExactly(held.value, T.self) {
            return RawNumericTypes.unsafeCast(held.value, to: T.self)
        }
        return try decodeAnyWay(type, envelope)
    }

    /// `decode` of everything but its common case (apart, so that the common case does not
    /// look up the type metadata this part needs).
    @inline(never)
    private static func decodeAnyWay<T: Decodable>(_ type: T.Type, _ envelope: Envelope) throws -> T {
        let frame = envelope.frame
        func mismatch(_ detail: String) -> NodeError {
            .typeMismatch(expected: "\(T.self)", source: envelope.source, tag: frame.tag, detail: detail)
        }
        if frame.encoding == .pickle { throw NodeError.pickledValue(source: envelope.source, tag: frame.tag) }
        if frame.kind == RankFrame.offer { throw mismatch("it offers memory, which only a user's receive takes") }
        if let arrayType = T.self as? any RawNumericArray.Type {
            switch frame.encoding {
            case .numeric:
                guard frame.element == arrayType.elementCode else {
                    throw mismatch("it holds an array of element code \(frame.element), not \(arrayType.elementCode)")
                }
            case .bytes:
                guard arrayType.elementCode == UInt8.wireCode else { throw mismatch("it holds raw bytes") }
            case .codable, .pickle:
                // An empty Python list travels untyped (fingerprint 0, count 0): any array type takes it.
                if frame.fingerprint == 0, envelope.payload == [0, 0, 0, 0], let empty = arrayType.uninitialized(count: 0) as? T {
                    return empty
                }
                throw mismatch("it holds an encoded value, not a numeric array")
            }
            if let value = envelope.array as? T { return value }
            let decoded = envelope.payload.withUnsafeBytes { arrayType.fromRawBytes($0) }
            guard let value = decoded as? T else { throw mismatch("its size is not a whole number of elements") }
            return value
        }
        guard frame.encoding == .codable else {
            throw mismatch(frame.encoding == .numeric ? "it holds a numeric array" : "it holds raw bytes (use recvBytes)")
        }
        if frame.fingerprint != 0 && frame.fingerprint != RankFrame.fingerprint(of: T.self) {
            throw mismatch("it was sent as a different type")
        }
        do {
            return try BinaryDecoder().decode(T.self, from: envelope.payload)
        } catch let tooDeep as BinaryDecoder.NestingTooDeep {
            throw NodeError.nestedTooDeep(source: envelope.source, tag: frame.tag, limit: tooDeep.limit)
        } catch {
            throw mismatch("\(error)")
        }
    }

    // MARK: Leaving

    /// Waits until everything this rank sent has been handed to the kernel, then shuts the
    /// sending side of its connections (end of stream for their readers), and, on a TCP
    /// connection used both ways (docs/messages.md §2), waits until the peer has acknowledged
    /// everything (at most 10 s; it warns on stderr when that passes): a process that ends with
    /// bytes unread on such a connection resets it, which drops what the peer had not
    /// acknowledged. Call it (`Node.run` does) before the process exits: exiting without it may
    /// lose the last messages sent to ranks of other workers, and a large array sent to a rank
    /// of the same worker (read from this process's memory, docs/messages.md §5).
    public func leave() async throws {
        guard !hasLeft.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // Arrays offered and not read yet go the usual way, so that they outlive this process.
        await resendUnanswered()
        let ready = links.withLock { table in
            table.compactMap { slot -> OutgoingLink? in
                if case .ready(let link)? = slot { return link }
                return nil
            }
        }
        for link in ready {
            try? await link.flush()  // A broken link has nothing left to flush; the others still get theirs.
            link.finish()
        }
        // A connection read both ways is reset when this process ends with bytes unread in it,
        // and the reset drops what the peer has not acknowledged: wait (bounded) until it has.
        let deadline = Clock.now + Self.acknowledgementWait
        for link in ready where link.readToo {
            while !link.isAcknowledged && Clock.now < deadline && !Task.isCancelled {
                try? await Task.sleep(for: .microseconds(200))  // Throws only when cancelled: the loop ends then.
            }
            if !link.isAcknowledged {
                CurrentProcess.printError(
                    "distr: rank \(id): rank \(link.rank) has not acknowledged all that this rank sent it within "
                        + "\(Int(Self.acknowledgementWait)) s of leaving; if this rank exits now, the end of it may be lost "
                        + "(is rank \(link.rank)'s node overloaded, or the network between them dropping packets?)\n")
            }
        }
    }

    /// How long `leave` waits for the peers' kernels to acknowledge what it sent.
    static let acknowledgementWait = 10.0

    // MARK: Validation

    func check(rank: Int) throws {
        guard (0..<count).contains(rank) else { throw NodeError.badRank(rank, count: count) }
    }

    func check(tag: Int) throws {
        guard tag >= 0 else { throw NodeError.badTag(tag) }
    }
}
