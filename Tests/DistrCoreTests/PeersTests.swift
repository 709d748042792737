import Testing

@testable import DistrCore

@Suite struct PeersTests {
    @Test func parse_acceptsAllAddressFormsCommentsAndSlots() throws {
        let text = """
            # cluster
            node1
            node2:7000 slots=4
            10.0.0.5   # lab pc

            [::1]:6970
            [fe80::1]
            192.168.1.2:6969\tslots=2
            """
        let peers = try PeersFile.parse(text, path: "peers.txt")
        #expect(peers.map(\.host) == ["node1", "node2", "10.0.0.5", "::1", "fe80::1", "192.168.1.2"])
        #expect(peers.map(\.port) == [6969, 7000, 6969, 6970, 6969, 6969])
        #expect(peers.map(\.slots) == [1, 4, 1, 1, 1, 2])
        #expect(peers[1].label == "node2:7000")
        #expect(peers[3].description == "[::1]:6970")
    }

    @Test(arguments: [
        ("a\nb:0\n", 2, "port '0'"),
        ("a:99999", 1, "port '99999'"),
        ("a:x", 1, "port 'x'"),
        ("[::1", 1, "missing ']'"),
        ("[::1]x", 1, "expected ':PORT'"),
        ("a slots=0", 1, "slots"),
        ("a slots=two", 1, "slots"),
        ("a color=red", 1, "unknown option 'color=red'"),
        (":80", 1, "empty host"),
    ])
    func parse_namesFileLineAndText(text: String, line: Int, reason: String) {
        do {
            _ = try PeersFile.parse(text, path: "p.txt")
            Issue.record("expected an error for \(text)")
        } catch {
            guard case .badLine(let path, let number, _, let why) = error else {
                Issue.record("wrong error \(error)")
                return
            }
            #expect(path == "p.txt")
            #expect(number == line)
            #expect(why.contains(reason), "\(why)")
            #expect(error.description.hasPrefix("p.txt:\(line): '"))
        }
    }

    @Test func parse_acceptsWindowsLineEndings() throws {
        let peers = try PeersFile.parse("a:7000 slots=2\r\nb\r\n", path: "p")
        #expect(peers.map(\.description) == ["a:7000", "b:6969"])
        #expect(peers.map(\.slots) == [2, 1])
    }

    @Test func parse_rejectsFileWithoutPeers() {
        #expect(throws: PeersFileError.empty(path: "p")) { try PeersFile.parse("# nothing\n\n", path: "p") }
    }

    @Test func load_reportsMissingFileWithAdvice() {
        do {
            _ = try PeersFile.load(path: "/nonexistent/peers.txt")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("/nonexistent/peers.txt"))
            #expect(error.description.contains("--local"))
        }
    }

    @Test func hostList_parsesCommaSeparatedPeers() throws {
        let peers = try PeersFile.parseHostList("h1,h2:7000,[::1]:6970")
        #expect(peers.map(\.description) == ["h1:6969", "h2:7000", "[::1]:6970"])
    }

    /// Trimming compares scalars, not characters: "\r\n" is one Character, and a combining mark
    /// after a trimmed space stays, on its own.
    @Test func trimmed_dropsTheSetsScalarsAtBothEnds() {
        #expect(" \t secret\r\n".trimmed(" \t\r\n") == "secret")
        #expect(" \u{301}x \r".trimmed(" \r") == "\u{301}x")
        #expect("é\n".trimmed("\n") == "é")
        #expect(" \r\n ".trimmed(" \r\n") == "")
        #expect("x\u{E9}\u{E9}".trimmed("\u{E9}") == "x")
        #expect("a b".trimmed(" ") == "a b")
    }
}
