/// Formats `distr-master status` results: a table for people, JSON for scripts. Pure.
package enum StatusTable {
    static let headers = ["PEER", "STATUS", "DISTR", "HOST", "OS/ARCH", "CORES", "LOAD", "MEM FREE", "DISK FREE", "CLOCK", "JOBS", "SEES MASTER AS"]

    /// One row per peer in the order given, columns aligned; an unusable peer's row gives its
    /// peer, its kind of failure and the message. Then the final line (`3 of 4 peers usable`).
    package static func table(_ peers: [PeerStatus]) -> String {
        let rows: [[String]] = peers.map { peer in
            switch peer.outcome {
            case .usable(let r, let offset):
                return [
                    peer.label, "ok", "\(r.distrVersion)/p\(r.protocolVersion)", r.hostName, "\(r.operatingSystem) \(r.architecture)",
                    "\(r.cores)", r.loadMilli.first.map(load) ?? "-", bytes(r.freeMemoryBytes), bytes(r.freeDiskBytes), clock(offset),
                    r.maxJobs > 0 ? "\(r.runningJobs)/\(r.maxJobs)" : "\(r.runningJobs)", r.masterAddress,
                ]
            case .failed(let failure):
                return [peer.label, failure.kind, failure.message]
            }
        }
        // Widths from full rows only: a failure's message runs on past the columns.
        var widths = headers.map(\.count)
        for row in rows where row.count == headers.count {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        for row in rows where row.count < headers.count {
            for (index, cell) in row.dropLast().enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var out = ""
            for (index, cell) in cells.enumerated() {
                if index > 0 { out += "  " }
                out += index == cells.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
            }
            return out
        }
        var lines = [line(headers)]
        lines += rows.map(line)
        lines.append(summary(peers))
        return lines.joined(separator: "\n") + "\n"
    }

    /// `3 of 4 peers usable`.
    package static func summary(_ peers: [PeerStatus]) -> String {
        "\(peers.filter(\.isUsable).count) of \(peers.count) peer\(peers.count == 1 ? "" : "s") usable"
    }

    /// One object: `{"usable": N, "total": M, "peers": [...]}`; each peer has `peer`, `usable`,
    /// and either the report's fields or `error` (kind) and `message`.
    package static func json(_ peers: [PeerStatus]) -> String {
        let objects = peers.map { peer -> String in
            var fields: [(String, String)] = [("peer", quote(peer.label)), ("usable", peer.isUsable ? "true" : "false")]
            switch peer.outcome {
            case .usable(let r, let offset):
                fields += [
                    ("distr_version", quote(r.distrVersion)), ("protocol_version", "\(r.protocolVersion)"), ("host", quote(r.hostName)),
                    ("os", quote(r.operatingSystem)), ("arch", quote(r.architecture)), ("cores", "\(r.cores)"),
                    ("load", "[" + r.loadMilli.map(load).joined(separator: ", ") + "]"), ("mem_free_bytes", "\(r.freeMemoryBytes)"),
                    ("work_dir", quote(r.workDirectory)), ("disk_free_bytes", "\(r.freeDiskBytes)"),
                    ("clock_offset_seconds", "\((offset * 1e6).rounded() / 1e6)"), ("running_jobs", "\(r.runningJobs)"),
                    ("max_jobs", r.maxJobs > 0 ? "\(r.maxJobs)" : "null"), ("master_address", quote(r.masterAddress)),
                ]
            case .failed(let failure):
                fields += [("error", quote(failure.kind)), ("message", quote(failure.message))]
                if let version = failure.peerProtocol { fields.append(("protocol_version", "\(version)")) }
            }
            return "    {" + fields.map { "\(quote($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
        }
        let usable = peers.filter(\.isUsable).count
        return "{\n  \"usable\": \(usable),\n  \"total\": \(peers.count),\n  \"peers\": [\n" + objects.joined(separator: ",\n")
            + (objects.isEmpty ? "" : "\n") + "  ]\n}\n"
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Thousandths as a decimal with two places: 1520 → "1.52".
    static func load(_ milli: Int) -> String {
        let hundredths = (milli + 5) / 10
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    /// Binary units with one decimal: 1536 → "1.5 KiB".
    static func bytes(_ count: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(count) B" }
        return "\((value * 10).rounded() / 10) \(units[unit])"
    }

    /// A signed offset in ms below a second, else s: "+0.4 ms", "-2.31 s".
    static func clock(_ seconds: Double) -> String {
        let sign = seconds < 0 ? "-" : "+"
        let magnitude = abs(seconds)
        if magnitude < 1 { return "\(sign)\((magnitude * 10_000).rounded() / 10) ms" }
        return "\(sign)\((magnitude * 100).rounded() / 100) s"
    }
}
