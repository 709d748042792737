import Testing

@testable import DistrCore

@Suite struct HostListTests {
    @Test(arguments: [
        ("rpi-[0-3]", ["rpi-0", "rpi-1", "rpi-2", "rpi-3"]),
        ("node[01-04,07]:7000", ["node01:7000", "node02:7000", "node03:7000", "node04:7000", "node07:7000"]),
        ("n[08-10]", ["n08", "n09", "n10"]),
        ("n[9-11]", ["n9", "n10", "n11"]),
        ("a[1-2]b[3-4]", ["a1b3", "a1b4", "a2b3", "a2b4"]),
        ("a[1-2],b3", ["a1", "a2", "b3"]),
        ("cn[1,3]-ib,login", ["cn1-ib", "cn3-ib", "login"]),
        ("plain", ["plain"]),
        ("h1,h2:7000,[::1]:6970,[fe80::1]", ["h1", "h2:7000", "[::1]:6970", "[fe80::1]"]),
        ("x[5]", ["x5"]),
        ("tux[000-002]", ["tux000", "tux001", "tux002"]),
    ])
    func expand_followsSlurmAndPdsh(expression: String, hosts: [String]) throws {
        #expect(try HostList.expand(expression) == hosts)
    }

    @Test(arguments: [
        ("rpi-[0-3", 5, "unclosed '['"),
        ("a[1-2]]", 7, "']' without a '['"),
        ("a[1[2]]", 4, "do not nest"),
        ("n[5-3]", 3, "range 5-3 is reversed"),
        ("n[]", 2, "empty range"),
        ("n[1,,2]", 5, "empty range"),
        ("n[1,]", 2, "empty range"),
        ("n[a-c]", 3, "'a' in a range"),
        ("n[1-x]", 5, "'x' in a range"),
        ("n[1-]", 5, "missing number"),
        ("n[-3]", 3, "missing number"),
        ("n[1234567890]", 3, "more than 9 digits"),
        ("a,,b", 3, "empty host before ','"),
        ("a,", 3, "empty host at the end"),
        ("", 1, "empty host at the end"),
        ("n[0-4096]", 0, "more than 4096 hosts"),
        ("a[0-99]b[0-99]", 0, "more than 4096 hosts"),
        ("a[0-3000],b[0-3000]", 0, "more than 4096 hosts"),
        ("a[1-999999999]", 0, "more than 4096 hosts"),
    ])
    func expand_rejectsBadExpressionsNamingTheColumn(expression: String, column: Int, reason: String) {
        do {
            let hosts = try HostList.expand(expression)
            Issue.record("accepted \(expression.debugDescription) as \(hosts.prefix(5))")
        } catch {
            #expect(error.expression == expression)
            #expect(error.column == column, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
            #expect("\(error)".contains("'\(expression)'"))
        }
    }

    @Test func expand_acceptsExactlyTheLimit() throws {
        #expect(try HostList.expand("n[1-4096]").count == 4096)
        #expect(try HostList.expand("n[1-3],m[1-2]", limit: 5).count == 5)
        #expect(throws: HostListError.self) { try HostList.expand("n[1-3],m[1-3]", limit: 5) }
    }

    @Test func hostsOption_expandsAndReportsErrorsAsHostsErrors() throws {
        let peers = try PeersFile.parseHostList("node[01-02]:7000,[::1]:6970")
        #expect(peers.map(\.host) == ["node01", "node02", "::1"])
        #expect(peers.map(\.port) == [7000, 7000, 6970])
        #expect(peers.map(\.label) == ["node01:7000", "node02:7000", "[::1]:6970"])
        do {
            _ = try PeersFile.parseHostList("rpi-[0-3")
            Issue.record("accepted an unclosed bracket")
        } catch {
            #expect("\(error)" == "--hosts 'rpi-[0-3', column 5: unclosed '['. Expected a list like 'rpi-[0-3],node[01-04,07]:7000'")
        }
        #expect(throws: PeersFileError.self) { try PeersFile.parseHostList("n[1-2]:0") }
    }

    @Test func peersFile_expandsEachLineKeepingSlots() throws {
        let peers = try PeersFile.parse("rpi-[0-1] slots=2\nnode7\n", path: "peers.txt")
        #expect(peers.map(\.host) == ["rpi-0", "rpi-1", "node7"])
        #expect(peers.map(\.slots) == [2, 2, 1])
        do {
            _ = try PeersFile.parse("ok\nn[3-1]\n", path: "peers.txt")
            Issue.record("accepted a reversed range")
        } catch {
            #expect("\(error)".hasPrefix("peers.txt:2: 'n[3-1]': host list 'n[3-1]', column 3: range 3-1 is reversed"))
        }
        #expect(throws: PeersFileError.tooManyPeers(path: "p", limit: 4096)) {
            try PeersFile.parse("a[1-3000]\nb[1-3000]\n", path: "p")
        }
    }
}
