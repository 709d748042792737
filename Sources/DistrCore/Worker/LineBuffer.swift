/// Cuts a byte stream into whole lines for output frames. Bytes are passed through untouched
/// (no UTF-8 decoding); a line longer than `maxLine` is cut so memory stays bounded.
package struct LineBuffer: Sendable {
    package let maxLine: Int
    private var pending: [UInt8] = []

    package init(maxLine: Int = 64 * 1024) { self.maxLine = maxLine }

    /// Appends bytes; returns the complete lines now available (with their newlines), or nil.
    package mutating func append(_ bytes: ArraySlice<UInt8>) -> [UInt8]? {
        guard let lastNewline = bytes.lastIndex(of: 10) else {
            pending.append(contentsOf: bytes)
            if pending.count >= maxLine { return flush() }
            return nil
        }
        var out = pending
        out.append(contentsOf: bytes[bytes.startIndex...lastNewline])
        pending = Array(bytes[(lastNewline + 1)...])
        return out
    }

    /// The partial last line, if any (at exit).
    package mutating func flush() -> [UInt8]? {
        guard !pending.isEmpty else { return nil }
        defer { pending = [] }
        return pending
    }
}
