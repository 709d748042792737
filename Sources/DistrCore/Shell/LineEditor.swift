/// The shell's line editing, as a pure state machine: key bytes in, the line and what to do with
/// the screen out. The terminal code (raw mode, writes) is elsewhere; this is what the tests drive.
///
/// Keys: printable bytes insert; Left/Right (and Ctrl-B/Ctrl-F) move; Home/End and Ctrl-A/Ctrl-E
/// jump; Backspace and Delete erase; Ctrl-U erases before the cursor; Up/Down walk the history;
/// Enter submits; Ctrl-C drops the line; Ctrl-D leaves on an empty line (else deletes).
/// The cursor counts bytes: the line is edited as bytes, which is exact for ASCII.
package struct LineEditor: Sendable {
    package enum Action: Sendable, Equatable {
        /// Redraw the line: prompt, buffer, cursor at `cursor`.
        case redraw
        /// The line is done (Enter): run it. The editor is empty again.
        case submit(String)
        /// Ctrl-C: the line was dropped; show that and start a new one.
        case cancel
        /// Ctrl-D on an empty line: leave.
        case endOfInput
        /// A key that does nothing here (Up at the oldest entry, an unknown escape).
        case bell
    }

    private enum Escape: Sendable {
        case none
        case started
        /// After `ESC [` or `ESC O`, the parameter bytes so far.
        case sequence([UInt8])
    }

    package private(set) var buffer: [UInt8] = []
    package private(set) var cursor = 0
    package private(set) var history: [String] = []
    private var historyIndex: Int?
    private var draft: [UInt8] = []
    private var escape = Escape.none
    package let historyLimit: Int

    package init(historyLimit: Int = 1000) { self.historyLimit = historyLimit }

    /// The line as text.
    package var line: String { String(decoding: buffer, as: UTF8.self) }

    /// Feeds a run of key bytes, returning the actions in order.
    package mutating func feed(_ bytes: [UInt8]) -> [Action] { bytes.flatMap { feed($0) } }

    /// Feeds one key byte.
    package mutating func feed(_ byte: UInt8) -> [Action] {
        switch escape {
        case .started:
            if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "O") {
                escape = .sequence([])
                return []
            }
            escape = .none
            return [.bell]
        case .sequence(let parameters):
            // Parameter bytes (digits, ';') until a final byte in 0x40...0x7E.
            if (0x30...0x3F).contains(byte) {
                escape = .sequence(parameters + [byte])
                return []
            }
            escape = .none
            return finishSequence(parameters, final: byte)
        case .none:
            break
        }
        switch byte {
        case 0x1B:
            escape = .started
            return []
        case 0x0D, 0x0A:
            let text = line
            if !buffer.isEmpty && history.last != text {
                history.append(text)
                if history.count > historyLimit { history.removeFirst(history.count - historyLimit) }
            }
            reset()
            return [.submit(text)]
        case 0x03:
            reset()
            return [.cancel]
        case 0x04:
            if buffer.isEmpty { return [.endOfInput] }
            return deleteAtCursor()
        case 0x01: return move(to: 0)
        case 0x05: return move(to: buffer.count)
        case 0x02: return move(to: cursor - 1)
        case 0x06: return move(to: cursor + 1)
        case 0x15:
            if cursor == 0 { return [.bell] }
            buffer.removeSubrange(0..<cursor)
            cursor = 0
            return [.redraw]
        case 0x7F, 0x08:
            if cursor == 0 { return [.bell] }
            buffer.remove(at: cursor - 1)
            cursor -= 1
            return [.redraw]
        case 0x09:
            return insert(UInt8(ascii: " "))
        case 0x00..<0x20:
            return [.bell]
        default:
            return insert(byte)
        }
    }

    private mutating func finishSequence(_ parameters: [UInt8], final: UInt8) -> [Action] {
        switch (parameters, final) {
        case ([], UInt8(ascii: "A")): return recall(older: true)
        case ([], UInt8(ascii: "B")): return recall(older: false)
        case ([], UInt8(ascii: "C")): return move(to: cursor + 1)
        case ([], UInt8(ascii: "D")): return move(to: cursor - 1)
        case ([], UInt8(ascii: "H")), ([UInt8(ascii: "1")], UInt8(ascii: "~")): return move(to: 0)
        case ([], UInt8(ascii: "F")), ([UInt8(ascii: "4")], UInt8(ascii: "~")): return move(to: buffer.count)
        case ([UInt8(ascii: "3")], UInt8(ascii: "~")): return deleteAtCursor()
        default: return [.bell]
        }
    }

    private mutating func insert(_ byte: UInt8) -> [Action] {
        buffer.insert(byte, at: cursor)
        cursor += 1
        return [.redraw]
    }

    private mutating func deleteAtCursor() -> [Action] {
        if cursor >= buffer.count { return [.bell] }
        buffer.remove(at: cursor)
        return [.redraw]
    }

    private mutating func move(to position: Int) -> [Action] {
        guard (0...buffer.count).contains(position) else { return [.bell] }
        if position == cursor { return [] }
        cursor = position
        return [.redraw]
    }

    private mutating func recall(older: Bool) -> [Action] {
        let next: Int?
        switch (historyIndex, older) {
        case (nil, true): next = history.isEmpty ? -1 : history.count - 1
        case (nil, false): return [.bell]
        case (let index?, true): next = index == 0 ? -1 : index - 1
        case (let index?, false): next = index + 1 < history.count ? index + 1 : nil
        }
        if next == -1 { return [.bell] }
        if historyIndex == nil { draft = buffer }
        historyIndex = next
        buffer = next.map { Array(history[$0].utf8) } ?? draft
        cursor = buffer.count
        return [.redraw]
    }

    private mutating func reset() {
        buffer = []
        cursor = 0
        historyIndex = nil
        draft = []
    }

    /// The bytes that redraw `prompt` and the line on the current terminal row, the cursor left
    /// where it belongs: carriage return, prompt, line, erase to the end, cursor back.
    package func redraw(prompt: String) -> [UInt8] {
        var out: [UInt8] = [0x0D] + Array(prompt.utf8) + buffer + Array("\u{1B}[K".utf8)
        let back = buffer.count - cursor
        if back > 0 { out += Array("\u{1B}[\(back)D".utf8) }
        return out
    }
}
