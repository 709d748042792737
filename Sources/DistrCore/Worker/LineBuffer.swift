/// Collects one output stream of a rank into batches of whole lines for output frames.
///
/// The bytes live in one buffer with `headroom` bytes free before them and `tailroom` after
/// them, so a batch read from the rank's pipe leaves as a frame built in place (header in
/// front, MAC behind) without being copied. Bytes are passed through untouched (no UTF-8
/// decoding). A line longer than `maxLine` (or than the buffer) is cut so memory stays
/// bounded: the piece held so far goes out as a line of its own.
package struct LineBuffer: Sendable {
    /// Most bytes held (and sent in one batch).
    package let capacity: Int
    package let maxLine: Int
    package let headroom: Int
    package let tailroom: Int
    private var storage: [UInt8]
    /// Bytes held.
    package private(set) var count = 0
    /// Bytes of whole lines held: up to and including the last newline.
    package private(set) var wholeCount = 0

    package init(capacity: Int = 256 * 1024, maxLine: Int = 64 * 1024, headroom: Int = 0, tailroom: Int = 0) {
        self.capacity = max(1, capacity)
        self.maxLine = max(1, maxLine)
        self.headroom = headroom
        self.tailroom = tailroom
        // Uninitialised: only the pages output reaches are touched (a rank that writes a line
        // costs one page, not the whole batch), and nothing is read before it is written but
        // the tailroom `take` saves and puts back as it was.
        let size = headroom + self.capacity + tailroom
        storage = [UInt8](unsafeUninitializedCapacity: size) { _, count in count = size }
    }

    /// True when no byte more fits: `take` must run before the next `fill`.
    package var isFull: Bool { count == capacity }

    /// True when a batch should go before more is read: the buffer is full, or the unfinished
    /// last line has reached `maxLine` and is cut.
    package var mustTake: Bool { isFull || count - wholeCount >= maxLine }

    /// Lets `body` write into the free space after the held bytes (a `read` from a pipe) and
    /// keeps the `n` bytes it reports, which must be at most the space it was given.
    package mutating func fill<E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> Int) throws(E) -> Int {
        let start = headroom + count
        let (headroom, capacity) = (headroom, capacity)
        let result = storage.withUnsafeMutableBytes { raw in
            Result { () throws(E) in try body(UnsafeMutableRawBufferPointer(rebasing: raw[start..<headroom + capacity])) }
        }
        let n = try result.get()
        guard n > 0 else { return n }
        count += n
        // The last newline among the new bytes, searched from the end: with lines of ordinary
        // length it is found within the last line.
        storage.withUnsafeBytes { raw in
            var index = headroom + count
            while index > start {
                index -= 1
                if raw[index] == 10 {
                    wholeCount = index + 1 - headroom
                    return
                }
            }
        }
        return n
    }

    /// Appends bytes (as many as fit); returns how many were taken.
    @discardableResult
    package mutating func append(_ bytes: some Collection<UInt8>) -> Int {
        let taken = Array(bytes.prefix(capacity - count))
        return fill { space in
            space.copyBytes(from: taken)
            return taken.count
        }
    }

    /// Hands the next batch to `send`, then keeps only the bytes after it. The batch is the
    /// whole lines held; with `all` (at exit), when the unfinished last line has reached
    /// `maxLine`, or when the buffer is full with no line end in it, every byte held. `send` gets the buffer from its headroom to the end of the
    /// batch's tailroom and the batch's size; the tailroom bytes are restored after it.
    /// - Returns: false (and `send` is not called) when there is nothing to send.
    @discardableResult
    package mutating func take(all: Bool = false, _ send: (UnsafeMutableRawBufferPointer, Int) -> Void) -> Bool {
        let n = all || count - wholeCount >= maxLine || (isFull && wholeCount == 0) ? count : wholeCount
        guard n > 0 else { return false }
        let (headroom, tailroom, count) = (headroom, tailroom, count)
        storage.withUnsafeMutableBytes { raw in
            let end = headroom + n
            // The tailroom may hold the start of the next line: saved around `send`, which
            // writes the frame's MAC there.
            let saved = Array(raw[end..<end + tailroom])
            send(UnsafeMutableRawBufferPointer(rebasing: raw[0..<end + tailroom]), n)
            UnsafeMutableRawBufferPointer(rebasing: raw[end..<end + tailroom]).copyBytes(from: saved)
            if n < count {
                let base = raw.baseAddress.unsafelyUnwrapped  // The storage is never empty (capacity >= 1).
                (base + headroom).copyMemory(from: base + end, byteCount: count - n)
            }
        }
        self.count -= n
        wholeCount = 0
        return true
    }
}
