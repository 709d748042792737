/// Targets for what users and peers name files with: peers.txt, bundle paths, job manifests.
extension FuzzTarget {
    static func peers(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        // Refusals are expected; what is accepted is checked.
        for list in [try? PeersFile.parse(text, path: "peers.txt"), try? PeersFile.parseHostList(text)] {  // Refusals expected.
            guard let list else { continue }
            fuzzCheck(!list.isEmpty, "an accepted peers list is empty")
            for peer in list {
                fuzzCheck(!peer.host.isEmpty, "peer with an empty host from \(text.debugDescription)")
                fuzzCheck((1...65535).contains(peer.port), "peer port \(peer.port) from \(text.debugDescription)")
                fuzzCheck((1...4096).contains(peer.slots), "peer slots \(peer.slots) from \(text.debugDescription)")
            }
        }
    }

    /// Expands with a small limit so that the bound is reached often; what comes out is bounded,
    /// has no empty host and no range brackets left, and expands to itself.
    static func hostList(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        let hosts: [String]
        do { hosts = try HostList.expand(text, limit: 64) } catch {
            fuzzCheck(error.column >= 0 && error.column <= text.count + 1, "column \(error.column) outside \(text.debugDescription)")
            return
        }
        fuzzCheck(!hosts.isEmpty && hosts.count <= 64, "\(hosts.count) hosts from \(text.debugDescription)")
        for host in hosts {
            fuzzCheck(!host.isEmpty, "empty host from \(text.debugDescription)")
            let literal = HostList.isAddressLiteral(Array(host)[...])
            fuzzCheck(literal || !host.contains("["), "range left in \(host.debugDescription)")
            let again = try? HostList.expand(host)  // A refusal here is the failure checked next.
            fuzzCheck(again == [host], "\(host.debugDescription) does not expand to itself")
        }
    }

    /// A path arrives as UTF-8 bytes and is repaired on decoding, as `ByteReader.string` does.
    static func bundlePath(_ data: [UInt8]) {
        let path = String(decoding: data, as: UTF8.self)
        guard (try? BundlePath.validate(path, limit: Limits.default.maxPathLength)) != nil else { return }  // Refusals are expected.
        checkAcceptedPath(path, limit: Limits.default.maxPathLength)
    }

    /// Decodes a jobStart payload and validates its manifest, as the worker does before it
    /// creates a single file; an accepted manifest must be safe byte for byte.
    static func manifest(_ data: [UInt8]) {
        guard case .jobStart(let spec)? = try? ControlMessage.decode(type: 1, payload: data) else { return }  // Most input is not a job.
        let limits = Limits.default
        guard (try? BundlePath.validate(manifest: spec.manifest, limits: limits)) != nil else { return }  // Refusals are expected.
        fuzzCheck(spec.manifest.count <= limits.maxFiles, "\(spec.manifest.count) files accepted")
        var total = 0
        var files = Set<[UInt8]>()
        var directories = Set<[UInt8]>()
        for entry in spec.manifest {
            checkAcceptedPath(entry.path, limit: limits.maxPathLength)
            let sum = total.addingReportingOverflow(entry.size)
            fuzzCheck(entry.size >= 0 && !sum.overflow && sum.partialValue <= limits.maxBundleBytes, "sizes over the limit accepted")
            total = sum.partialValue
            let path = Array(entry.path.utf8)
            fuzzCheck(!files.contains(path) && !directories.contains(path), "\(entry.path.debugDescription) accepted twice")
            files.insert(path)
            var prefix: [UInt8] = []
            for component in path.split(separator: 0x2F).dropLast() {
                if !prefix.isEmpty { prefix.append(0x2F) }
                prefix += component
                fuzzCheck(!files.contains(prefix), "\(entry.path.debugDescription) accepted under a file")
                directories.insert(prefix)
            }
        }
    }

    /// The rules as the kernel sees them: bytes split at 0x2F.
    static func checkAcceptedPath(_ path: String, limit: Int) {
        let bytes = Array(path.utf8)
        let shown = path.debugDescription
        fuzzCheck(!bytes.isEmpty && bytes.count <= limit, "path of \(bytes.count) bytes accepted")
        fuzzCheck(!bytes.contains(0), "path with NUL accepted: \(shown)")
        fuzzCheck(bytes.first != 0x2F, "absolute path accepted: \(shown)")
        for component in bytes.split(separator: 0x2F, omittingEmptySubsequences: false) {
            fuzzCheck(!component.isEmpty, "empty component accepted: \(shown)")
            fuzzCheck(!component.elementsEqual([0x2E]), "'.' component accepted: \(shown)")
            fuzzCheck(!component.elementsEqual([0x2E, 0x2E]), "'..' component accepted: \(shown)")
        }
    }
}
