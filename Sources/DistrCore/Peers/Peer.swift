/// One worker the master talks to.
package struct Peer: Sendable, Equatable, CustomStringConvertible {
    package var host: String
    package var port: Int
    package var slots: Int
    /// The address as the user wrote it (`DISTR_HOST`).
    package var label: String

    package static let defaultPort = 6969

    package init(host: String, port: Int = Peer.defaultPort, slots: Int = 1, label: String? = nil) {
        self.host = host
        self.port = port
        self.slots = slots
        self.label = label ?? (host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
    }

    /// `host:port`, with brackets around IPv6 literals.
    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Parses `HOST`, `HOST:PORT`, `[IPv6]`, `[IPv6]:PORT` or a bare IPv6 literal.
    /// - Returns: nil with a reason when the text is not an address.
    package static func parseAddress(_ text: String) -> Result<(host: String, port: Int), PeerSyntax> {
        if text.isEmpty { return .failure(.init("empty address")) }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(.init("missing ']' after IPv6 address")) }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if host.isEmpty { return .failure(.init("empty IPv6 address")) }
            if rest.isEmpty { return .success((host, defaultPort)) }
            guard rest.hasPrefix(":") else { return .failure(.init("expected ':PORT' after ']'")) }
            return parsePort(String(rest.dropFirst())).map { (host, $0) }
        }
        let colons = text.filter { $0 == ":" }.count
        if colons > 1 { return .success((text, defaultPort)) }
        if colons == 1 {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            if parts[0].isEmpty { return .failure(.init("empty host before ':'")) }
            return parsePort(String(parts[1])).map { (String(parts[0]), $0) }
        }
        return .success((text, defaultPort))
    }

    static func parsePort(_ text: String) -> Result<Int, PeerSyntax> {
        guard let port = Int(text), (1...65535).contains(port) else {
            return .failure(.init("port '\(text)' is not a number from 1 to 65535"))
        }
        return .success(port)
    }
}

/// A reason an address or peers line does not parse.
package struct PeerSyntax: Error, Equatable, Sendable {
    package var reason: String
    init(_ reason: String) { self.reason = reason }
}

/// A bad peers file or `--hosts` list.
package enum PeersFileError: Error, Equatable, Sendable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case badLine(path: String, line: Int, text: String, reason: String)
    case empty(path: String)
    case badHostList(HostListError)
    case tooManyPeers(path: String, limit: Int)

    package var description: String {
        switch self {
        case .unreadable(let path, let reason):
            "cannot read peers file '\(path)': \(reason). Create it (see peers.txt.example), or use --hosts h1,h2 or --local N"
        case .badLine(let path, let line, let text, let reason):
            "\(path):\(line): '\(text)': \(reason). Expected 'HOST[:PORT] [slots=N]'"
        case .empty(let path): "\(path) lists no workers; add one 'HOST[:PORT]' per line"
        case .badHostList(let error): "--hosts \(error). Expected a list like 'rpi-[0-3],node[01-04,07]:7000'"
        case .tooManyPeers(let path, let limit): "\(path) lists more than \(limit) workers (the limit); list fewer"
        }
    }
}

/// Parses `peers.txt`: one worker per line, `HOST[:PORT] [slots=N]`, `#` comments, blank lines.
package enum PeersFile {
    package static func parse(_ text: String, path: String) throws(PeersFileError) -> [Peer] {
        var peers: [Peer] = []
        for (number, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty { continue }
            let shown = rawLine.trimmed(" \t\r")
            func bad(_ reason: String) -> PeersFileError {
                .badLine(path: path, line: number + 1, text: shown, reason: reason)
            }
            var slots = 1
            for option in fields.dropFirst() {
                guard option.hasPrefix("slots=") else { throw bad("unknown option '\(option)' (only slots=N is known)") }
                guard let count = Int(option.dropFirst(6)), count >= 1, count <= 4096 else {
                    throw bad("slots must be a whole number from 1 to 4096")
                }
                slots = count
            }
            let names: [String]
            do { names = try HostList.expand(String(fields[0])) } catch { throw bad("host list \(error)") }
            if names.count > HostList.maximumHosts - peers.count { throw .tooManyPeers(path: path, limit: HostList.maximumHosts) }
            for name in names {
                switch Peer.parseAddress(name) {
                case .success(let address):
                    peers.append(Peer(host: address.host, port: address.port, slots: slots, label: name))
                case .failure(let syntax): throw bad(names.count > 1 ? "'\(name)': \(syntax.reason)" : syntax.reason)
                }
            }
        }
        if peers.isEmpty { throw .empty(path: path) }
        return peers
    }

    /// Parses `--hosts h1,h2:7000,[::1]:6970,rpi-[0-3],node[01-04,07]:7000` (see `HostList`).
    package static func parseHostList(_ list: String) throws(PeersFileError) -> [Peer] {
        let names: [String]
        do { names = try HostList.expand(list) } catch { throw .badHostList(error) }
        var peers: [Peer] = []
        for (index, name) in names.enumerated() {
            switch Peer.parseAddress(name) {
            case .success(let address): peers.append(Peer(host: address.host, port: address.port, label: name))
            case .failure(let syntax): throw .badLine(path: "--hosts", line: index + 1, text: name, reason: syntax.reason)
            }
        }
        return peers
    }

    package static func load(path: String) throws(PeersFileError) -> [Peer] {
        do {
            return try parse(String(decoding: try FileIO.readAll(path), as: UTF8.self), path: path)
        } catch let error as SystemError {
            throw .unreadable(path: path, reason: error.reason)
        } catch let error as PeersFileError {
            throw error
        } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
    }
}

extension StringProtocol {
    /// Drops leading and trailing scalars found in `set` (compared as scalars, because "\r\n"
    /// is a single Character in Swift).
    func trimmed(_ set: String) -> String {
        let bytes = Array(set.utf8)
        // An ASCII set (every caller's) is trimmed as bytes: an ASCII byte is a whole scalar in
        // UTF-8, and bytes need none of the generic scalar-view code, whose run-time metadata
        // cost the master about 0.1 ms on its way to connect (the secret file).
        if bytes.allSatisfy({ $0 < 0x80 }) {
            let utf8 = Substring(self).utf8
            var start = utf8.startIndex
            var end = utf8.endIndex
            while start < end, bytes.contains(utf8[start]) { start = utf8.index(after: start) }
            while start < end, bytes.contains(utf8[utf8.index(before: end)]) { end = utf8.index(before: end) }
            return String(decoding: utf8[start..<end], as: UTF8.self)
        }
        let scalars = Set(set.unicodeScalars)
        var s = Substring(self).unicodeScalars[...]
        while let first = s.first, scalars.contains(first) { s = s.dropFirst() }
        while let last = s.last, scalars.contains(last) { s = s.dropLast() }
        return String(String.UnicodeScalarView(s))
    }
}
