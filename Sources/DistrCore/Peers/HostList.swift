/// Host-list expressions as pdsh, clush and Slurm write them: `rpi-[0-3]`, `node[01-04,07]:7000`,
/// `a[1-2]b[1-2]` (every combination, the last bracket varying fastest, as Slurm orders them),
/// `a[1-2],b3` (commas split hosts only outside brackets), so `$SLURM_JOB_NODELIST` expands.
///
/// A bracket holds comma-separated numbers and ranges `LOW-HIGH`; the width of `LOW` is kept
/// (`[01-10]` gives `01` … `10`). An item that starts with `[` and holds a `:` before its `]` is an
/// IPv6 literal (`[::1]:6970`) and is passed through unchanged.
package enum HostList {
    /// The most hosts one expression may expand to.
    package static let maximumHosts = 4096
    /// The most digits of a number in a bracket (keeps arithmetic far from overflow).
    static let maximumDigits = 9

    /// Expands `expression` into host names (with any `:PORT` suffix kept on each).
    /// - Throws: `HostListError` naming the expression, the column and what to write instead.
    package static func expand(_ expression: String, limit: Int = maximumHosts) throws(HostListError) -> [String] {
        let characters = Array(expression)
        func fail(_ column: Int, _ reason: String) -> HostListError {
            HostListError(expression: expression, column: column + 1, reason: reason)
        }
        var hosts: [String] = []
        var start = 0
        var depth = 0
        var open = 0
        // Split at commas outside brackets; check bracket balance on the way.
        var items: [(start: Int, end: Int)] = []
        for (index, character) in characters.enumerated() {
            switch character {
            case "[":
                if depth > 0 { throw fail(index, "'[' inside brackets (brackets do not nest)") }
                depth = 1
                open = index
            case "]":
                if depth == 0 { throw fail(index, "']' without a '['") }
                depth = 0
            case "," where depth == 0:
                items.append((start, index))
                start = index + 1
            default: break
            }
        }
        if depth > 0 && !isAddressLiteral(characters[start...]) { throw fail(open, "unclosed '['") }
        items.append((start, characters.count))
        for item in items {
            if item.start == item.end {
                throw fail(item.start, item.start == characters.count ? "empty host at the end" : "empty host before ','")
            }
            let text = characters[item.start..<item.end]
            if isAddressLiteral(text) {
                try append([String(text)], to: &hosts, limit: limit, expression: expression)
                continue
            }
            try append(try expandItem(text, fail: fail, limit: limit), to: &hosts, limit: limit, expression: expression)
        }
        return hosts
    }

    /// `[::1]`, `[fe80::1]:7000`: brackets holding a `:` at the start of an item.
    static func isAddressLiteral(_ text: ArraySlice<Character>) -> Bool {
        guard text.first == "[" else { return false }
        for character in text.dropFirst() {
            if character == "]" { return false }
            if character == ":" { return true }
        }
        return false
    }

    private static func append(_ more: [String], to hosts: inout [String], limit: Int, expression: String) throws(HostListError) {
        if more.count > limit - hosts.count {
            throw HostListError(expression: expression, column: 0, reason: HostListError.tooManyReason(limit))
        }
        hosts += more
    }

    /// One item without top-level commas: literal text and bracket groups, every combination.
    private static func expandItem(
        _ text: ArraySlice<Character>, fail: (Int, String) -> HostListError, limit: Int
    ) throws(HostListError) -> [String] {
        // Parts: literal strings and lists of alternatives.
        var parts: [[String]] = []
        var literal = ""
        var index = text.startIndex
        var total = 1
        while index < text.endIndex {
            let character = text[index]
            guard character == "[" else {
                literal.append(character)
                index += 1
                continue
            }
            // Balanced brackets were checked by the caller.
            guard let close = text[index...].firstIndex(of: "]") else { throw fail(index, "unclosed '['") }
            parts.append([literal])
            literal = ""
            let choices = try expandBracket(text[(index + 1)..<close], fail: fail, limit: limit)
            let product = total.multipliedReportingOverflow(by: choices.count)
            if product.overflow || product.partialValue > limit {
                throw fail(-1, HostListError.tooManyReason(limit))
            }
            total = product.partialValue
            parts.append(choices)
            index = close + 1
        }
        parts.append([literal])
        var hosts = [""]
        for part in parts {
            if part.count == 1 {
                for i in hosts.indices { hosts[i] += part[0] }
            } else {
                hosts = hosts.flatMap { prefix in part.map { prefix + $0 } }
            }
        }
        return hosts
    }

    /// `01-04,07` → `["01", "02", "03", "04", "07"]`.
    private static func expandBracket(
        _ text: ArraySlice<Character>, fail: (Int, String) -> HostListError, limit: Int
    ) throws(HostListError) -> [String] {
        var choices: [String] = []
        var start = text.startIndex
        let opening = text.startIndex - 1
        if text.isEmpty { throw fail(opening, "empty range '[]'; write numbers or ranges like [0-3,7]") }
        for end in Array(text.indices.filter { text[$0] == "," }) + [text.endIndex] {
            let element = text[start..<end]
            if element.isEmpty {
                throw fail(start == text.endIndex ? opening : start, "empty range in '[...]'; write numbers or ranges like [0-3,7]")
            }
            let pieces = element.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            let low = pieces[0]
            let high = pieces.count > 1 ? pieces[1] : low
            let highStart = pieces.count > 1 ? element.startIndex + low.count + 1 : element.startIndex
            let lowValue = try number(low, at: element.startIndex, fail: fail)
            let highValue = try number(high, at: highStart, fail: fail)
            if highValue < lowValue {
                throw fail(element.startIndex, "range \(String(low))-\(String(high)) is reversed; write \(String(high))-\(String(low))")
            }
            if highValue - lowValue + 1 > limit - choices.count {
                throw fail(-1, HostListError.tooManyReason(limit))
            }
            for value in lowValue...highValue { choices.append(padded(value, width: low.count)) }
            start = end + 1
        }
        return choices
    }

    private static func number(
        _ digits: ArraySlice<Character>, at column: Int, fail: (Int, String) -> HostListError
    ) throws(HostListError) -> Int {
        if digits.isEmpty { throw fail(column, "missing number in range; write LOW-HIGH like 0-3") }
        for (offset, character) in digits.enumerated() where !character.isASCII || !character.isNumber {
            throw fail(column + offset, "'\(character)' in a range; brackets hold numbers and ranges like [0-3,7]")
        }
        if digits.count > maximumDigits { throw fail(column, "number '\(String(digits))' has more than \(maximumDigits) digits") }
        return Int(String(digits)) ?? 0
    }

    private static func padded(_ value: Int, width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

/// A host-list expression that does not expand.
package struct HostListError: Error, Equatable, Sendable, CustomStringConvertible {
    package var expression: String
    /// 1-based, in characters; 0 when the error is about the whole expression.
    package var column: Int
    package var reason: String

    package var description: String {
        column > 0 ? "'\(expression)', column \(column): \(reason)" : "'\(expression)': \(reason)"
    }

    static func tooManyReason(_ limit: Int) -> String {
        "expands to more than \(limit) hosts (the limit); list fewer hosts"
    }
}
