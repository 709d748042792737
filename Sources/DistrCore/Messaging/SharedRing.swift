/// A one-way byte ring in memory two ranks on the same worker share: the sending rank copies the
/// same frame stream it would write to a socket into it, and the receiving rank copies it out
/// into its `RankFrameDecoder` (docs/messages.md §2 has the layout). The socket pair the worker
/// handed out with the segment stays open beside it as the doorbell (a byte wakes a side that
/// sleeps) and as the liveness signal (end of stream when the other rank goes).
///
/// ```
/// offset  written by  field
/// 128     sender      head: total bytes written (u64, release)
/// 256     receiver    receiverSleeping: 1 = ring the doorbell after writing (u32)
/// 384     receiver    tail: total bytes read (u64, release)
/// 512     sender      senderSleeping: 1 = ring the doorbell after reading (u32)
/// 640     receiver    receiverWaiting: 1 = a thread sleeps on this word (futex): wake it after writing (u32)
/// 4096    sender      data: capacity bytes (a power of two), byte i of the stream at i % capacity
/// ```
///
/// Each side keeps its own index privately and only publishes it: the other side's index is read,
/// checked against its own (the distance must be 0...capacity), and never trusted for anything
/// but the count of bytes it allows. The capacity comes from the segment's size, which no rank can
/// change once it is mapped. A bad index is `NodeError.corruptRing` naming the other rank. The
/// flags are only hints: a wrong value from the other side costs a wasted wake-up or a wait to
/// the time limit, never a wrong byte.
enum SharedRing {
    static let headOffset = 128
    static let receiverSleepingOffset = 256
    static let tailOffset = 384
    static let senderSleepingOffset = 512
    static let receiverWaitingOffset = 640
    static let headerSize = 4096
    /// The ring's data bytes in the segments the worker makes.
    static let defaultCapacity = 1 << 20
    static let minimumCapacity = 4096
    static let maximumCapacity = 1 << 28

    /// The bytes of a segment holding a ring of `capacity` data bytes.
    static func segmentSize(capacity: Int = defaultCapacity) -> Int { headerSize + capacity }

    /// The data capacity of a segment of `size` bytes, if that is a valid ring segment.
    static func capacity(segmentSize size: Int) -> Int? {
        let capacity = size - headerSize
        guard capacity >= minimumCapacity, capacity <= maximumCapacity, capacity & (capacity - 1) == 0 else { return nil }
        return capacity
    }

    /// Bytes written and not yet read, from the sender's `head` and the receiver's `tail`; nil
    /// when the pair is impossible (more than `capacity` apart, or `tail` ahead of `head`).
    static func unread(head: UInt64, tail: UInt64, capacity: Int) -> Int? {
        let distance = head &- tail
        guard distance <= UInt64(capacity) else { return nil }
        return Int(distance)
    }

    /// Where `count` bytes of the stream starting at stream position `index` lie in the data
    /// area: one range, or two when they wrap past the end. `count` must be at most `capacity`.
    static func spans(at index: UInt64, count: Int, capacity: Int) -> (Range<Int>, Range<Int>) {
        let offset = Int(index & UInt64(capacity - 1))
        let first = min(count, capacity - offset)
        return (offset..<offset + first, 0..<count - first)
    }
}

/// The memory a ring lives in: a mapped segment, or (in tests) any buffer of the same layout.
struct RingMemory: @unchecked Sendable {
    // @unchecked: a plain pointer to a mapping kept alive by `owner`; all access to the shared
    // words is atomic (`SharedWord`), and data copies are ordered by the index release/acquire.
    let base: UnsafeMutableRawPointer
    let capacity: Int
    /// Keeps the mapping alive (nil when the caller owns the memory, as tests do).
    let owner: SharedMemory?

    /// The ring of a mapped segment. - Throws: `NodeError.corruptRing` when its size is not a ring's.
    init(segment: SharedMemory, peer: Int) throws(NodeError) {
        guard let capacity = SharedRing.capacity(segmentSize: segment.size) else {
            throw .corruptRing(rank: peer, detail: "a segment of \(segment.size) bytes is not a ring")
        }
        base = segment.base
        self.capacity = capacity
        owner = segment
    }

    /// A ring over memory the caller keeps alive and zeroed (`SharedRing.segmentSize(capacity:)` bytes).
    init(base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
        owner = nil
    }

    var data: UnsafeMutableRawPointer { base + SharedRing.headerSize }

    /// Publishes this side's index at `offset`, then claims the other side's sleeping flag at
    /// `flag`: true when it was asleep (ring its doorbell). Dekker with `requestWake`: the index
    /// is visible before the flag is read.
    func publish(_ index: UInt64, at offset: Int, claiming flag: Int) -> Bool {
        SharedWord.storeRelease(base, offset, index)
        SharedWord.fence()
        return SharedWord.load32(base, flag) != 0 && SharedWord.exchange32(base, flag, 0) != 0
    }

    /// Sets this side's sleeping flag at `flag`; the caller then looks at the other index again.
    func requestWake(_ flag: Int) {
        SharedWord.store32(base, flag, 1)
        SharedWord.fence()
    }

    /// After a publish (and its fence): wakes the receiving thread that sleeps on the
    /// `receiverWaiting` word, if one does (Dekker with `sleepUntilWritten`).
    func wakeWaitingReceiver() {
        let flag = SharedRing.receiverWaitingOffset
        if SharedWord.load32(base, flag) != 0 && SharedWord.exchange32(base, flag, 0) != 0 { SharedWord.wake(base, flag) }
    }

    /// The receiving side: sleeps on the `receiverWaiting` word until the sender publishes a
    /// head beyond the published tail, or `timeout` seconds pass (at once when it already did).
    /// A thread of the receiving rank sleeps here itself, so the message that wakes it costs one
    /// wake-up, not a doorbell to the progress thread and a second hand-over. The caller looks at
    /// the ring again afterwards, whatever woke it: a hostile sender's words can only cut the
    /// sleep short or make it last to the timeout.
    /// `delivered` is asked after the flag is up: whether another thread of this rank (its
    /// progress thread) took the bytes and delivered the message meanwhile; that thread wakes
    /// the sleeper after delivering (`wakeWaitingReceiver`), so neither order is missed.
    func sleepUntilWritten(timeout: Double, unless delivered: () -> Bool = { false }) {
        let flag = SharedRing.receiverWaitingOffset
        SharedWord.store32(base, flag, 1)
        SharedWord.fence()
        if SharedWord.loadAcquire(base, SharedRing.headOffset) == SharedWord.loadAcquire(base, SharedRing.tailOffset), !delivered() {
            SharedWord.wait(base, flag, while: 1, timeout: timeout)
        }
        SharedWord.store32(base, flag, 0)
    }

    /// Says a receiving task watches the ring itself: the sender need not ring the doorbell.
    /// Written only when set: the sender reads the word after every write, and a store of the
    /// same value would still take its cache line away from the sender's core.
    func stayAwake() {
        let flag = SharedRing.receiverSleepingOffset
        if SharedWord.load32(base, flag) != 0 { SharedWord.store32(base, flag, 0) }
    }

    /// True when the sender has published bytes beyond the published tail: a cheap look, with no
    /// lock and no check (the read that follows checks).
    var mayHaveUnread: Bool {
        SharedWord.loadAcquire(base, SharedRing.headOffset) != SharedWord.loadAcquire(base, SharedRing.tailOffset)
    }
}

/// The sending side of a ring: one per outgoing link, used by one thread at a time.
struct RingWriter {
    let memory: RingMemory
    /// The rank that reads the ring, named in errors.
    let peer: Int
    /// Total bytes written (private; published as `head`).
    private(set) var head: UInt64 = 0
    /// The receiver's `tail` when last read (checked then). The room it leaves is certainly
    /// free, so a write that fits in it does not read `tail` again: that word's cache line is
    /// the receiver's, written by every read, and fetching it costs a transfer between cores.
    private var knownTail: UInt64 = 0

    init(memory: RingMemory, peer: Int) {
        self.memory = memory
        self.peer = peer
    }

    /// Copies as much of `first` then `second` as there is room for, and publishes it. Returns the
    /// count taken (0 when the ring is full) and whether the receiver sleeps and must be woken.
    /// - Throws: `NodeError.corruptRing` when the receiver's `tail` is impossible.
    mutating func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws(NodeError) -> (count: Int, wake: Bool) {
        var free = memory.capacity - Int(head &- knownTail)
        if free < first.count + second.count { free = memory.capacity - (try unread()) }
        let total = min(free, first.count + second.count)
        guard total > 0 else { return (0, false) }
        let fromFirst = min(total, first.count)
        copyIn(UnsafeRawBufferPointer(rebasing: first[0..<fromFirst]), at: head)
        if total > fromFirst {
            copyIn(UnsafeRawBufferPointer(rebasing: second[0..<total - fromFirst]), at: head &+ UInt64(fromFirst))
        }
        head &+= UInt64(total)
        let wake = memory.publish(head, at: SharedRing.headOffset, claiming: SharedRing.receiverSleepingOffset)
        memory.wakeWaitingReceiver()
        return (total, wake)
    }

    /// Copies `first` then `second` and publishes them, only when both fit whole (nothing is
    /// written otherwise): a send that writes its whole frame at once never leaves a frame half
    /// in the ring for a writer thread to finish. Returns whether it wrote, and whether the
    /// receiver sleeps and must be woken. - Throws: `NodeError.corruptRing` (an impossible `tail`).
    mutating func writeWhole(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws(NodeError) -> (written: Bool, wake: Bool) {
        let total = first.count + second.count
        if memory.capacity - Int(head &- knownTail) < total {
            guard memory.capacity - (try unread()) >= total else { return (false, false) }
        }
        let (count, wake) = try write(first, second)
        return (count > 0, wake)
    }

    /// Says the sender is about to sleep until the receiver frees room; true when there already
    /// is room (then it must not sleep). - Throws: `NodeError.corruptRing`.
    mutating func prepareToSleep() throws(NodeError) -> Bool {
        memory.requestWake(SharedRing.senderSleepingOffset)
        return try unread() < memory.capacity
    }

    /// Reads the receiver's `tail` (and keeps it as `knownTail`): the bytes not yet read.
    private mutating func unread() throws(NodeError) -> Int {
        let tail = SharedWord.loadAcquire(memory.base, SharedRing.tailOffset)
        guard let unread = SharedRing.unread(head: head, tail: tail, capacity: memory.capacity) else {
            throw .corruptRing(rank: peer, detail: "it reports having read to byte \(tail) of the \(head) written")
        }
        knownTail = tail
        return unread
    }

    private func copyIn(_ bytes: UnsafeRawBufferPointer, at index: UInt64) {
        guard let source = bytes.baseAddress else { return }
        let (first, second) = SharedRing.spans(at: index, count: bytes.count, capacity: memory.capacity)
        (memory.data + first.lowerBound).copyMemory(from: source, byteCount: first.count)
        if !second.isEmpty { memory.data.copyMemory(from: source + first.count, byteCount: second.count) }
    }
}

/// The receiving side of a ring: one per incoming channel, used under the channel's lock.
struct RingReader {
    let memory: RingMemory
    /// The rank that writes the ring, named in errors.
    let peer: Int
    /// Total bytes read (private; published as `tail`).
    private(set) var tail: UInt64 = 0

    init(memory: RingMemory, peer: Int) {
        self.memory = memory
        self.peer = peer
    }

    /// Copies up to `space.count` unread bytes into `space` and frees them. Returns the count (0
    /// when the ring is empty) and whether the sender sleeps and must be woken.
    /// - Throws: `NodeError.corruptRing` when the sender's `head` is impossible.
    mutating func read(into space: UnsafeMutableRawBufferPointer) throws(NodeError) -> (count: Int, wake: Bool) {
        let count = min(try unread(), space.count)
        guard count > 0, let target = space.baseAddress else { return (0, false) }
        let (first, second) = SharedRing.spans(at: tail, count: count, capacity: memory.capacity)
        target.copyMemory(from: memory.data + first.lowerBound, byteCount: first.count)
        if !second.isEmpty { (target + first.count).copyMemory(from: memory.data, byteCount: second.count) }
        tail &+= UInt64(count)
        return (count, memory.publish(tail, at: SharedRing.tailOffset, claiming: SharedRing.senderSleepingOffset))
    }

    /// Lets `body` look at the next `count` unread bytes where they lie in the ring, when that
    /// many are there in one piece (not wrapping past the end); nil otherwise. `body` returns
    /// how many of them it took (0 ... `count`), which are freed: the result says whether the
    /// sender sleeps and must be woken. - Throws: `NodeError.corruptRing`.
    mutating func inPlace<R>(
        _ count: Int, _ body: (UnsafeRawBufferPointer) -> (taken: Int, result: R)
    ) throws(NodeError) -> (result: R, wake: Bool)? {
        guard count <= (try unread()) else { return nil }
        let (first, second) = SharedRing.spans(at: tail, count: count, capacity: memory.capacity)
        guard second.isEmpty else { return nil }
        let (taken, result) = body(UnsafeRawBufferPointer(start: memory.data + first.lowerBound, count: count))
        guard taken > 0 else { return (result, false) }
        tail &+= UInt64(min(taken, count))
        return (result, memory.publish(tail, at: SharedRing.tailOffset, claiming: SharedRing.senderSleepingOffset))
    }

    /// Says a receiving task watches the ring itself (`RingMemory.stayAwake`).
    func stayAwake() { memory.stayAwake() }

    /// True when unread bytes are waiting. - Throws: `NodeError.corruptRing`.
    func hasUnread() throws(NodeError) -> Bool { try unread() > 0 }

    /// Says the receiver is about to sleep until the sender writes; true when bytes are already
    /// there (then it must not sleep). - Throws: `NodeError.corruptRing`.
    func prepareToSleep() throws(NodeError) -> Bool {
        memory.requestWake(SharedRing.receiverSleepingOffset)
        return try unread() > 0
    }

    private func unread() throws(NodeError) -> Int {
        let head = SharedWord.loadAcquire(memory.base, SharedRing.headOffset)
        guard let unread = SharedRing.unread(head: head, tail: tail, capacity: memory.capacity) else {
            throw .corruptRing(rank: peer, detail: "it reports having written to byte \(head) with \(tail) read, in a ring of \(memory.capacity)")
        }
        return unread
    }
}

/// The socket beside a ring: a byte on it wakes the other side, asleep until the ring changes
/// (its value means nothing); its end of stream says the other rank has gone.
enum Doorbell {
    /// Wakes the other side.
    static func ring(_ fd: Int32) {
        // Full: it wakes the other side already; broken: the other side has gone (no SIGPIPE:
        // a rank whose peer exited while a wake-up was asked for must not die of it).
        FD.sendByteQuietly(fd, 1)
    }

    /// Reads the doorbell bytes waiting on the (nonblocking) socket; true when it has ended.
    static func drain(_ fd: Int32) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: 64, alignment: 1) { scratch in
            while true {
                switch ByteInput.readSocket(fd, into: scratch) {
                case .bytes: continue
                case .wouldBlock: return false
                case .endOfStream: return true
                }
            }
        }
    }
}
