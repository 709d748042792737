/// One line typed at the shell's prompt, parsed: nothing, `exit`, or a command for all nodes or
/// for the nodes an `@` selector names (`@0,2-3 uptime`, `@rpi-1 uptime`, `@rpi-1,4 df -h`).
package enum ShellLine: Sendable, Equatable {
    case empty
    case exit
    /// `nodes` nil: every node. Else node ids (peers order), sorted, without duplicates.
    case run(nodes: [Int]?, command: String)

    /// Parses `line` for a cluster whose nodes, in peers order, are `nodes` (name as written
    /// in peers.txt or --hosts, and host).
    /// - Throws: `ShellInputError` for a selector that names no node or is malformed.
    package static func parse(_ line: String, nodes: [(label: String, host: String)]) throws(ShellInputError) -> ShellLine {
        let text = line.trimmed(" \t\r\n")
        if text.isEmpty { return .empty }
        if text == "exit" { return .exit }
        guard text.hasPrefix("@") else { return .run(nodes: nil, command: text) }
        let afterAt = text.dropFirst()
        let selector = afterAt.prefix { $0 != " " && $0 != "\t" }
        let command = afterAt.dropFirst(selector.count).trimmed(" \t")
        if selector.isEmpty {
            throw ShellInputError(
                "'@' needs node ids or names right after it, then the command: '@0,2-3 uptime' or '@\(nodes.first?.label ?? "host") uptime'")
        }
        var chosen = Set<Int>()
        for item in selector.split(separator: ",", omittingEmptySubsequences: false) {
            chosen.formUnion(try select(String(item), in: String(selector), nodes: nodes))
        }
        if command.isEmpty { throw ShellInputError("'@\(selector)' needs a command after it, e.g. '@\(selector) uptime'") }
        return .run(nodes: chosen.sorted(), command: command)
    }

    private static func select(_ item: String, in selector: String, nodes: [(label: String, host: String)]) throws(ShellInputError) -> [Int] {
        if item.isEmpty { throw ShellInputError("empty item in '@\(selector)': separate node ids or names with single commas") }
        let byLabel = nodes.indices.filter { nodes[$0].label == item }
        if !byLabel.isEmpty { return byLabel }
        let byHost = nodes.indices.filter { nodes[$0].host == item }
        if !byHost.isEmpty { return byHost }
        let ids = nodes.isEmpty ? "none" : nodes.count == 1 ? "0" : "0-\(nodes.count - 1)"
        let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
        let numbers = bounds.map { Int($0) }
        if bounds.count <= 2, numbers.allSatisfy({ $0 != nil }), let low = numbers.first ?? nil, let high = numbers.last ?? nil {
            if low > high { throw ShellInputError("range '\(item)' in '@\(selector)' runs backwards; write '\(high)-\(low)'") }
            guard low >= 0, high < nodes.count else {
                let missing = (low..<(high + 1)).first { $0 < 0 || $0 >= nodes.count } ?? high
                throw ShellInputError("node \(missing) in '@\(selector)' does not exist: the node ids are \(ids), in peers order")
            }
            return Array(low...high)
        }
        let names = nodes.enumerated().map { "\($0.offset) \($0.element.label)" }.joined(separator: ", ")
        throw ShellInputError("no node is named '\(item)' (in '@\(selector)'); the nodes are: \(names)")
    }
}

/// A line the shell cannot run, said for the person at the prompt.
package struct ShellInputError: Error, Equatable, CustomStringConvertible {
    package var description: String
    init(_ description: String) { self.description = description }
}
