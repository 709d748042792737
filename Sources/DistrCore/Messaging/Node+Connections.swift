import Synchronization

extension Node {
    /// The link to `rank`, connecting on first use. Concurrent first sends share one attempt.
    func link(to rank: Int) async throws -> OutgoingLink {
        if let ready = readyLink(to: rank) { return ready }
        let local = placements[rank].worker == workerIndex
        return try await withCheckedThrowingContinuation { continuation in
            let start = links.withLock { table -> Bool in
                switch table[rank] {
                case .ready(let link):
                    continuation.resume(returning: link)
                    return false
                case .failed(let error):
                    continuation.resume(throwing: error)
                    return false
                case .connecting(var waiting):
                    waiting.append(continuation)
                    table[rank] = .connecting(waiting)
                    return false
                case .negotiating(var negotiation):
                    // Its dial is under way (or this rank's choice waits on the peer's answer).
                    negotiation.waiting.append(continuation)
                    table[rank] = .negotiating(negotiation)
                    return false
                case nil where local:
                    table[rank] = .connecting([continuation])
                    return true
                case nil:
                    var negotiation = Negotiation(choice: LinkChoice(rank: id, peer: rank), waiting: [continuation])
                    _ = negotiation.choice.wantLink()
                    table[rank] = .negotiating(negotiation)
                    return true
                }
            }
            if start { connect(to: rank) }
        }
    }

    /// The link to `rank` when it is connected.
    func readyLink(to rank: Int) -> OutgoingLink? {
        links.withLock { table in
            if case .ready(let link)? = table[rank] { return link }
            return nil
        }
    }

    private func connect(to rank: Int) {
        let placement = placements[rank]
        if placement.worker == workerIndex {
            // Same worker: ask it for a socket pair; the answer arrives on the agent reader.
            do { try AgentChannel.send(agentFD, .connectLocal(to: rank)) } catch {
                complete(rank, .failure(.connectFailed(rank: rank, reason: "agent channel: \(error)")))
            }
            return
        }
        let threadBody: @Sendable () -> Void = { [self] in
            let fd: Int32
            let answers: Bool
            do {
                fd = try TCPSocket.connect(host: placement.host, port: placement.port, timeout: 10)
                let context = RankConnectionContext(jobID: jobID, from: id, to: rank).encoded
                answers = try Connection.rankHandshake(fd: fd, key: jobKey, context: context, timeout: 10)
            } catch {
                dialFailed(rank, .connectFailed(rank: rank, reason: "via \(placement.label): \(error)"))
                return
            }
            dialled(rank, fd: fd, answers: answers)
        }
        Threads.start(name: "distr-connect-\(rank)", threadBody)
    }

    /// A same-worker connection came (or could not be made).
    func complete(_ rank: Int, _ result: Result<Int32, NodeError>, ring: RingWriter? = nil) {
        let sendBudget = spin.withLock { $0.sendBudget }
        let link: OutgoingLink? =
            if case .success(let fd) = result { OutgoingLink(fd: fd, rank: rank, ring: ring, spinBudget: sendBudget) } else { nil }
        let waiting = links.withLock { table -> [CheckedContinuation<OutgoingLink, any Error>] in
            guard case .connecting(let waiting)? = table[rank] else { return [] }
            switch result {
            case .success: table[rank] = link.map { .ready($0) }
            case .failure(let error): table[rank] = .failed(error)
            }
            return waiting
        }
        switch result {
        case .success: if let link { resume(waiting, with: .success(link)) }
        case .failure(let error): resume(waiting, with: .failure(error))
        }
    }

    private func resume(_ waiting: [CheckedContinuation<OutgoingLink, any Error>], with result: Result<OutgoingLink, NodeError>) {
        for continuation in waiting { continuation.resume(with: result.mapError { $0 as any Error }) }
    }

    private func dialFailed(_ rank: Int, _ error: NodeError) {
        let waiting = links.withLock { table -> [CheckedContinuation<OutgoingLink, any Error>] in
            guard case .negotiating(var negotiation)? = table[rank] else { return [] }
            let actions = negotiation.choice.dialFailed()
            if let answer = actions.answer, let channel = negotiation.owesAnswer { Self.answer(channel, answer) }
            guard negotiation.choice.state == .failed else { return [] }
            table[rank] = .failed(error)
            return negotiation.waiting
        }
        resume(waiting, with: .failure(error))
    }

    /// This rank's TCP dial to `rank` is up (`answers`: the worker said `rank` answers `bothWays`).
    /// Runs on the dial's own thread, which waits here while the choice waits for an answer.
    private func dialled(_ rank: Int, fd: Int32, answers: Bool) {
        // Read from the start when the peer may answer or send on it (registered before the
        // signal goes: the answer must find a reader).
        var reader: IncomingChannel?
        if answers {
            do {
                reader = IncomingChannel(
                    fd: try FD.duplicate(fd), source: rank, pool: pool, maxMessageBytes: maxMessageBytes, signal: RankFrame.answer,
                    onSignal: { [self] _, frame in answered(rank, frame.tag) })
            } catch {
                FD.close(fd)
                dialFailed(rank, .connectFailed(rank: rank, reason: "no descriptor for the connection's reader: \(error)"))
                return
            }
        }
        if let reader {
            mailbox.connectionOpened(from: rank)
            progress.add(reader)
        }
        let latch = Latch()
        let actions = links.withLock { table -> LinkChoice.Actions in
            guard case .negotiating(var negotiation)? = table[rank] else {
                // The peer's dial was taken (or this rank failed meanwhile): this one carries nothing.
                return LinkChoice.Actions(closeOwnDial: true)
            }
            let actions = negotiation.choice.dialled(answers: answers, now: Clock.now)
            // Written under the lock, before the descriptor is stored: nothing may close it
            // meanwhile, and no send may come first (the signal is the connection's first frame).
            if actions.sayBothWays { Self.writeSignal(RankFrame.bothWays, on: fd) }
            if let answer = actions.answer, let channel = negotiation.owesAnswer {
                Self.answer(channel, answer)
                negotiation.owesAnswer = nil
            }
            if !actions.closeOwnDial {
                negotiation.ownFD = fd
                negotiation.decided = latch
            }
            table[rank] = .negotiating(negotiation)
            return actions
        }
        if actions.closeOwnDial {
            // Nothing was said on it, so the peer writes nothing on it either. Its end of stream
            // ends the peer's reader, and then this rank's (a copy keeps the socket open).
            if reader != nil {
                do { try Socket.shutdown(fd, .write) } catch {
                    // The peer has gone: its reader has ended already.
                }
            }
            FD.close(fd)
            return
        }
        if let route = actions.use { finish(links.withLock { apply(route, to: &$0[rank], rank: rank) }) }
        // The higher rank waits for the answer, and then for the lower rank's dial, at most
        // `LinkChoice.answerTimeout` each, then settles for this dial.
        while true {
            let deadline = links.withLock { table -> Double? in
                guard case .negotiating(let negotiation)? = table[rank] else { return nil }
                return negotiation.choice.deadline
            }
            guard let deadline else { return }
            latch.wait(until: .after(max(0, deadline - Clock.now)))
            let outcome = links.withLock { table -> Outcome in
                guard case .negotiating(var negotiation)? = table[rank], let route = negotiation.choice.tick(now: Clock.now).use else {
                    return Outcome()
                }
                table[rank] = .negotiating(negotiation)
                return apply(route, to: &table[rank], rank: rank)
            }
            finish(outcome)
        }
    }

    /// The answer to this rank's `bothWays` came (on the progress thread).
    private func answered(_ rank: Int, _ answer: Int) {
        let outcome = links.withLock { table -> Outcome in
            guard case .negotiating(var negotiation)? = table[rank] else { return Outcome() }
            let actions = negotiation.choice.answered(answer, now: Clock.now)
            table[rank] = .negotiating(negotiation)
            return actions.use.map { apply($0, to: &table[rank], rank: rank) } ?? Outcome()
        }
        finish(outcome)
    }

    /// A rank of another worker dialled this one and said `bothWays` (on the progress thread).
    func offered(_ channel: IncomingChannel) {
        let rank = channel.source
        // The copy a link would send on, made first: without it the connection cannot be taken.
        let copy: Int32?
        do { copy = try FD.duplicate(channel.fd) } catch { copy = nil }
        let outcome = links.withLock { table -> Outcome in
            var negotiation: Negotiation
            switch table[rank] {
            case nil: negotiation = Negotiation(choice: LinkChoice(rank: id, peer: rank), waiting: [])
            case .negotiating(let current)?: negotiation = current
            case .ready(let link)?:
                let settled = LinkChoice.settledAnswer(rank: id, peer: rank, sendsOnOwnDialThatSaidBothWays: link.ownDialSaidBothWays)
                Self.answer(channel, settled)
                if let copy { FD.close(copy) }
                return Outcome()
            case .failed?, .connecting?:
                Self.answer(channel, LinkChoice.noDialComing)
                if let copy { FD.close(copy) }
                return Outcome()
            }
            let actions = negotiation.choice.peerDialOffered()
            guard let copy else {
                // No descriptor left to send on it: declined, as by a rank that settled elsewhere
                // (the choice in the table did not see the offer).
                Self.answer(channel, LinkChoice.noDialComing)
                return Outcome()
            }
            if let answer = actions.answer {
                Self.answer(channel, answer)
            } else {
                negotiation.owesAnswer = channel
            }
            if actions.closeOwnDial, let own = negotiation.ownFD {
                // Said `bothWays` on it: the peer answers there, and its reader reads to the end.
                do { try Socket.shutdown(own, .write) } catch {
                    // The peer has gone: nothing more to tell it.
                }
                FD.close(own)
                negotiation.ownFD = nil
            }
            guard let route = actions.use else {
                table[rank] = .negotiating(negotiation)
                FD.close(copy)
                return Outcome()
            }
            negotiation.peersFD = copy
            table[rank] = .negotiating(negotiation)
            return apply(route, to: &table[rank], rank: rank)
        }
        finish(outcome)
    }

    /// Writes the answer to a `bothWays`.
    private static func answer(_ channel: IncomingChannel, _ answer: Int) {
        writeSignal(RankFrame.answer, tag: answer, on: channel.fd)
    }

    /// Writes a connection signal: a header into a socket that has carried nothing this way yet,
    /// so it always fits.
    private static func writeSignal(_ kind: UInt8, tag: Int = 0, on fd: Int32) {
        do { try RankFrame.signal(kind, tag: tag).withHeaderBytes { try FD.writeAll(fd, $0) } } catch {
            // The other rank has gone: its end of the connection tells this rank's reader and sends.
        }
    }

    /// What is left to do outside the table's lock once a choice settled.
    struct Outcome {
        var waiting: [CheckedContinuation<OutgoingLink, any Error>] = []
        var link: OutgoingLink?
        var latch: Latch?
    }

    /// The choice in `slot` settled on `route`: the slot becomes the ready link.
    private func apply(_ route: LinkChoice.Route, to slot: inout LinkSlot?, rank: Int) -> Outcome {
        guard case .negotiating(var negotiation)? = slot else { return Outcome() }
        let fd: Int32?
        switch route {
        case .own:
            fd = negotiation.ownFD
            negotiation.ownFD = nil
        case .peers:
            fd = negotiation.peersFD
            negotiation.peersFD = nil
        }
        guard let fd else { return Outcome() }
        // This rank's own dial is read (and may be sent on by the peer) exactly when it said `bothWays`.
        let saidBothWays = negotiation.choice.saidBothWays
        let link = OutgoingLink(
            fd: fd, rank: rank, spinBudget: spin.withLock { $0.sendBudget }, readToo: route == .peers || saidBothWays,
            ownDialSaidBothWays: route == .own && saidBothWays)
        slot = .ready(link)
        return Outcome(waiting: negotiation.waiting, link: link, latch: negotiation.decided)
    }

    private func finish(_ outcome: Outcome) {
        outcome.latch?.open()
        if let link = outcome.link { resume(outcome.waiting, with: .success(link)) }
    }

    /// Follows the worker's messages: incoming connections, local connect answers, exits, abort.
    func startAgentReader() {
        let threadBody: @Sendable () -> Void = { [self] in
            while true {
                let next: (AgentMessage, [Int32])?
                do { next = try AgentChannel.receive(agentFD) } catch { break }
                guard let (message, fds) = next else { break }
                handleAgentMessage(message, fds: fds)
            }
            mailbox.abort("the worker closed the agent channel")
        }
        Threads.start(name: "distr-agent", threadBody)
    }

    func handleAgentMessage(_ message: AgentMessage, fd: Int32) {
        handleAgentMessage(message, fds: fd >= 0 ? [fd] : [])
    }

    func handleAgentMessage(_ message: AgentMessage, fds: [Int32]) {
        let fd = fds.first ?? -1
        switch message {
        case .incoming(let from) where fds.count == 1 && (0..<count).contains(from):
            // Counted before any later exit notice is read: the channel is ordered.
            mailbox.connectionOpened(from: from)
            // A rank of another worker may begin with `bothWays` (`LinkChoice`).
            let acrossWorkers = placements.indices.contains(from) && placements[from].worker != workerIndex
            progress.add(
                IncomingChannel(
                    fd: fd, source: from, pool: pool, maxMessageBytes: maxMessageBytes, signal: acrossWorkers ? RankFrame.bothWays : 0,
                    onSignal: { [self] channel, _ in offered(channel) }))
        case .incomingShared(let from) where fds.count == 2 && (0..<count).contains(from):
            mailbox.connectionOpened(from: from)
            let segment = fds[1]
            defer { FD.close(segment) }
            do {
                let ring = RingReader(memory: try Self.mapRing(segment, peer: from), peer: from)
                progress.add(IncomingChannel(fd: fd, source: from, pool: pool, maxMessageBytes: maxMessageBytes, ring: ring))
            } catch {
                // Receives from that rank fail with the reason instead of waiting for a ring no one reads.
                FD.close(fd)
                mailbox.connectionClosed(from: from, failure: error)
            }
        case .connected(let to, let error) where fds.count <= 1 && (0..<count).contains(to):
            complete(to, fd >= 0 ? .success(fd) : .failure(.connectFailed(rank: to, reason: error)))
        case .connectedShared(let to) where fds.count == 2 && (0..<count).contains(to):
            let segment = fds[1]
            defer { FD.close(segment) }
            do {
                let ring = RingWriter(memory: try Self.mapRing(segment, peer: to), peer: to)
                complete(to, .success(fd), ring: ring)
            } catch {
                FD.close(fd)
                complete(to, .failure(.connectFailed(rank: to, reason: "\(error)")))
            }
        case .readsOffers(let rank) where fds.isEmpty && (0..<count).contains(rank):
            offerReaders.withLock { _ = $0.insert(rank) }
        case .peerExited(let rank, let status):
            for descriptor in fds { FD.close(descriptor) }
            mailbox.peerExited(rank, status: status)
        case .abort(let reason):
            for descriptor in fds { FD.close(descriptor) }
            mailbox.abort(reason)
        default:
            for descriptor in fds { FD.close(descriptor) }
        }
    }

    /// Maps a ring segment the worker passed. - Throws: `NodeError.corruptRing` naming `peer`.
    static func mapRing(_ segment: Int32, peer: Int) throws(NodeError) -> RingMemory {
        let memory: SharedMemory
        do {
            memory = try SharedMemory(
                mapping: segment, minimumSize: SharedRing.segmentSize(capacity: SharedRing.minimumCapacity),
                maximumSize: SharedRing.segmentSize(capacity: SharedRing.maximumCapacity))
        } catch {
            throw .corruptRing(rank: peer, detail: "its segment cannot be mapped: \(error)")
        }
        return try RingMemory(segment: memory, peer: peer)
    }
}

extension Node {
    /// How long a receive reads the sockets itself before it parks (microseconds; set
    /// DISTR_SPIN_USEC, 0 to never spin).
    static let spinBudget: Double = {
        let text = Environment.value("DISTR_SPIN_USEC") ?? ""
        return (Double(text) ?? 100) / 1e6
    }()

    /// The next matching message. Tries the mailbox, then (as `SpinPolicy` plans it) reads the
    /// relevant connections itself for a short while (the message is usually already on its way)
    /// and, for a ring, sleeps on it, and only then parks until the progress thread delivers it:
    /// a message that arrives while the task is reading or sleeping costs no thread hand-over.
    func envelope(source: Int?, tag: Int?) async throws -> Envelope {
        if let envelope = envelopeNow(source: source, tag: tag) { return envelope }
        return try await parkedEnvelope(source: source, tag: tag)
    }

    /// The part of `envelope` that never suspends: the mailbox, then the spin and ring sleep
    /// `SpinPolicy` plans. Nil when the receive must park.
    func envelopeNow(source: Int?, tag: Int?) -> Envelope? {
        if let envelope = mailbox.take(source: source, tag: tag) { return envelope }
        guard source != id else { return nil }
        // The common case, a receive from one rank whose messages come through one connection
        // (or its ring), without the array of channels the general case makes.
        if let source, let only = progress.onlyChannel(from: source) { return waitOnChannels(CollectionOfOne(only), source: source, tag: tag) }
        return waitOnChannels(progress.channels(from: source), source: source, tag: tag)
    }

    /// Spins on `channels` and sleeps on a single ring as `SpinPolicy` plans it.
    private func waitOnChannels(_ channels: some Collection<IncomingChannel>, source: Int?, tag: Int?) -> Envelope? {
        guard let first = channels.first else { return nil }
        let single = channels.count == 1
        // Sleeping on one ring misses nothing only when that ring is the one way the message
        // can come (not `.any`: another task of this rank may send to itself).
        // (Closures, not key paths: a key path is applied through the runtime on every receive.)
        let allRings = channels.allSatisfy { $0.hasRing }
        let (plan, yielding) = spin.withLock { ($0.plan(canSleep: source != nil && single && first.hasRing, onlyRings: allRings), $0.yields) }
        // Plain sockets are waited on in the kernel (`SocketWait`, its own learned spin) even
        // when the plan has no spin: a wait in `ppoll` costs no CPU, and it spares the thread
        // hand-over of parking.
        let socketsOnly = !channels.contains { $0.hasRing } && Node.spinBudget > 0
        guard plan.spin > 0 || plan.sleep > 0 || socketsOnly else { return nil }
        let (envelope, outcome) = spinRead(channels, source: source, tag: tag, plan: plan, allRings: allRings, yielding: yielding)
        spin.withLock { $0.record(outcome, planned: plan) }
        return envelope
    }

    /// The part of `envelope` that suspends: waits for the progress thread to deliver.
    func parkedEnvelope(source: Int?, tag: Int?) async throws -> Envelope {
        // Parked, this task needs the progress thread to read for it. Once this receive is
        // registered: re-arm the sockets no receive reads (one that a receive reads meanwhile is
        // re-armed when that receive stops and sees this one waiting: `ProgressThread.arm`), and
        // ask the rings for the doorbell, which they do not ring unasked (a write from then on
        // wakes the progress thread, and what came before is taken here).
        return try await mailbox.receive(source: source, tag: tag) {
            progress.armSilenced()
            requestDoorbells(from: source)
        }
    }

    func requestDoorbells(from source: Int?) {
        for channel in progress.channels(from: source) where channel.hasRing && channel.prepareToSleep() {
            if case .closed = channel.drain(into: mailbox) { progress.remove(channel) }
        }
    }

    /// Reads `channels` until a matching message comes: spinning until `plan.spin` seconds pass
    /// without bytes, then, on a single ring, sleeping on it for up to `plan.sleep` seconds.
    /// `allRings`: every channel has a ring; `yielding`: hand the core over at every idle turn.
    private func spinRead(
        _ channels: some Collection<IncomingChannel>, source: Int?, tag: Int?, plan: (spin: Double, sleep: Double), allRings: Bool,
        yielding: Bool
    ) -> (Envelope?, SpinPolicy.Outcome) {
        // Silence the progress thread for these connections while this task reads them, so it
        // is not woken for data the task is about to take.
        for channel in channels { progress.arm(channel, false) }
        defer { for channel in channels { progress.arm(channel, true) } }
        let ring = channels.count == 1 && channels.first?.hasRing == true ? channels.first : nil
        // Plain sockets (no ring) are also waited on in the kernel once a short spin found nothing
        // (no spin at all when the plan has none: the machine is crowded).
        var sockets = allRings ? nil : SocketWait(channels, policy: progress.socketSpin, spinning: plan.spin > 0)
        // The spin budget counts idle time: while bytes keep arriving (a large message), the task
        // goes on reading them itself.
        let spinFor = sockets != nil ? Node.spinBudget : plan.spin
        var deadline = Clock.now + spinFor
        var sleepEnd: Double?
        var idle = 0
        // Without a tight loop, a ping-pong's receive sleeps before it reads: its first read would
        // only find that the answer has not come yet. But the progress thread may have delivered
        // the message between this receive's look into the mailbox and the silencing above: the
        // sockets would then stay quiet for the whole wait.
        if sockets?.waitsFirst == true, let envelope = mailbox.take(source: source, tag: tag) { return (envelope, .spun) }
        sockets?.waitBeforeFirstRead(until: deadline)
        var firstRead = true
        // The mailbox's change count when this receive last looked into it: an idle turn of the
        // loop looks again only when something was queued or a rank went meanwhile (each look
        // takes the mailbox's lock, twice).
        var seen: Int?
        // From a single connection (or its ring) the receive keeps the first frame that it can
        // take, rather than queueing it in the mailbox and taking it back out (made once: the
        // receive returns as soon as it holds one).
        var claim = channels.count == 1 ? IncomingChannel.Claim(source: source, tag: tag) : nil
        while true {
            var moved = false
            for channel in channels {
                // A ring's socket is left to the progress thread: looking at it costs a system call.
                switch channel.drain(into: mailbox, watchingSocket: !channel.hasRing, firstFrame: sockets != nil, claim: &claim) {
                case .closed: progress.remove(channel)
                case .drained(let bytes): moved = moved || bytes
                }
            }
            if firstRead {
                firstRead = false
                sockets?.firstRead(found: moved)
            }
            if let envelope = claim?.envelope {
                sockets?.finish(caught: true)
                return (envelope, sleepEnd == nil ? .spun : .slept)
            }
            // Read before the look: a change after it is seen on the next turn.
            let changes = mailbox.changeCount
            if moved || changes != seen || sleepEnd != nil {
                seen = changes
                if let envelope = mailbox.take(source: source, tag: tag) {
                    sockets?.finish(caught: true)
                    return (envelope, sleepEnd == nil ? .spun : .slept)
                }
                if mailbox.isHopeless(source: source) { return (nil, .missed) }
            }
            if idle % 16 == 15 && Task.isCancelled { return (nil, .missed) }
            if moved {
                sockets?.bytesCame()
                deadline = Clock.now + spinFor
                idle = 0
                continue
            }
            idle += 1
            // A yielding spin reads the clock at every turn: a yield may hand the core to a rank
            // that computes for a whole time slice, and the spin is bounded in wall time.
            if spinFor > 0 && ((idle % 16 != 0 && !yielding) || Clock.now < deadline) {
                if sockets != nil {
                    sockets?.pause(idle: idle, until: deadline)
                } else if idle % 8 == 0 && !allRings {
                    // Mostly a tight loop; over sockets, now and then let another thread on this
                    // core run (when the ranks fit the cores, a ring's sender never needs this
                    // thread's core).
                    Threads.yield()
                } else if yielding {
                    // Ranks outnumber the cores: the sender may be waiting for this one.
                    Threads.yield()
                } else {
                    SharedWord.pause()
                }
                continue
            }
            sockets?.finish(caught: false)
            guard let ring, plan.sleep > 0 else { return (nil, .missed) }
            let now = Clock.now
            let end = sleepEnd ?? now + plan.sleep
            sleepEnd = end
            guard now < end else { return (nil, .missed) }
            ring.sleepOnRing(timeout: end - now) { mailbox.holds(source: source, tag: tag) }
        }
    }
}
