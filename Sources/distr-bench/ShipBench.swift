@preconcurrency import Glibc
import DistrCore
import Dispatch
import Foundation
import Synchronization

/// Shipping a 100 MiB bundle of 1,000 files to 4 workers: the first time (fresh workers, empty
/// caches, a master that has not hashed the files before) and again (cached), against copying the
/// same files over one plain TCP socket per worker, written to disk at the other end. Also SHA-256
/// of the same bytes against `sha256sum`.
///
/// Both sides write 400 MB of new files, and file creation on ext4 without a journal (this VM's
/// disk) is very sensitive to what was deleted shortly before: the inode allocator steps over
/// every inode freed in the last 5 s (35 s while its inode-table block is not yet written back),
/// reading each one's on-disk inode. A copy that followed the removal of the previous copy's
/// 4,000 files ran at a fifth of the speed of one that did not. So the measurement is kept fair:
/// nothing is removed until every run is done, every timed run starts with the dirty pages of the
/// runs before it written back (`sync`, so no writeback competes and the sources are clean in the
/// page cache for both), and the plain copy and distr take turns, each run a pair.
extension Bench {
    static let shipFiles = 1000
    static let shipFileSize = 104_858

    mutating func ship() throws {
        let workers = 4
        let runs = quick ? 1 : 5
        let bundle = root + "/bundle"
        let files = try makeBundle(bundle)
        let written = DistrCore.Clock.now
        let total = Double(Self.shipFiles * Self.shipFileSize)
        let megabytes = Double(workers) * total / 1e6
        var removeLater: [String] = []
        defer { for path in removeLater { FileIO.removeTree(path) } }
        // The master keeps a digest only for files whose times are 2 s old (DigestCache): past
        // that, every first run hashes and keeps all, and every second run finds all kept.
        FileIO.syncAll()
        Deadline.pause(max(0, written + 2.5 - DistrCore.Clock.now))
        var plain: [Double] = []
        var first: [Double] = []
        var again: [Double] = []
        for run in 0..<runs {
            let targets = (0..<workers).map { root + "/plain-\(run)-\($0)" }
            removeLater += targets
            FileIO.syncAll()
            plain.append(megabytes / (try Self.plainCopy(files, from: bundle, to: targets)))
            removeLater += (startedWorkers..<startedWorkers + workers).map { workDirectory($0) }
            let fresh = try startWorkers(workers)
            defer { WorkerProcess.stop(fresh) }
            let hosts = fresh.map { "127.0.0.1:\($0.port)" }.joined(separator: ",")
            let command = [
                master, "run", "-q", "--timeout", "600", "--hosts", hosts, "--secret-file", secretFile, "--file", bundle, "--", "/bin/true",
            ]
            // A digest cache of its own per run: the first run's master hashes every file.
            let digests = root + "/digests-\(run)"
            removeLater.append(digests)
            FileIO.syncAll()
            first.append(megabytes / (try time(command, environment: ["XDG_CACHE_HOME": digests], what: "shipping the bundle")))
            FileIO.syncAll()
            again.append(megabytes / (try time(command, environment: ["XDG_CACHE_HOME": digests], what: "shipping the bundle again")))
        }
        let against = "the same files over one plain TCP socket per worker, written to disk"
        add(
            "ship: 100 MiB in 1,000 files to 4 workers, first time", unit: "MB/s", distr: Self.median(first), baseline: Self.median(plain),
            against: against, target: .ratioAtLeast(0.7))
        add(
            "ship: the same again (worker caches)", unit: "MB/s", distr: Self.median(again), baseline: Self.median(plain), against: against)
        try hashing(files, in: bundle)
        notes.append(
            "ship: MB/s counts the bytes every worker gets (4 x 100 MiB); distr's time is the whole distr-master run of /bin/true, "
                + "whose master hashes the files first; medians of \(runs) runs, each a plain copy then distr, nothing removed "
                + "until all ran, dirty pages written back (sync) before each")
    }

    /// Writes the bundle: 10 directories of 100 files of `shipFileSize` bytes each, every file
    /// different (a cache keyed by digest must not find one file twice). Returns the relative paths.
    func makeBundle(_ bundle: String) throws -> [String] {
        var paths: [String] = []
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var bytes = [UInt8](repeating: 0, count: Self.shipFileSize)
        for index in 0..<Self.shipFiles {
            let directory = "d\(index / 100)"
            if index % 100 == 0 { try FileIO.makeDirectories(bundle + "/" + directory) }
            bytes.withUnsafeMutableBytes { raw in
                for offset in stride(from: 0, to: raw.count - 7, by: 8) {
                    // xorshift64: incompressible, and fast enough not to matter.
                    state ^= state << 13
                    state ^= state >> 7
                    state ^= state << 17
                    raw.storeBytes(of: state, toByteOffset: offset, as: UInt64.self)
                }
            }
            let path = "\(directory)/f\(index)"
            try FileIO.write(bundle + "/" + path, bytes, mode: 0o644, exclusive: false)
            paths.append(path)
        }
        return paths
    }

    /// Sends every file over one TCP connection per target (a header of name length, size and
    /// name, then the bytes), each receiver writing them under its directory; all at once.
    /// - Returns: the seconds from the first connect to the last file written.
    static func plainCopy(_ files: [String], from bundle: String, to targets: [String]) throws -> Double {
        let failures = Mutex<[String]>([])
        let done = DispatchGroup()
        var listeners: [(fd: Int32, port: Int)] = []
        defer { for listener in listeners { FD.close(listener.fd) } }
        for target in targets {
            let (fd, address) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
            listeners.append((fd, address.port))
            done.enter()
            Thread {
                defer { done.leave() }
                do { try receive(listener: fd, into: target) } catch { failures.withLock { $0.append("receiver: \(error)") } }
            }.start()
        }
        let start = DistrCore.Clock.now
        for listener in listeners {
            let port = listener.port
            Thread {
                do { try send(files, from: bundle, port: port) } catch { failures.withLock { $0.append("sender: \(error)") } }
            }.start()
        }
        done.wait()
        let seconds = DistrCore.Clock.now - start
        if let failure = failures.withLock({ $0.first }) { throw NodeError.badArgument("the plain copy failed: \(failure)") }
        return seconds
    }

    /// Each file's header, then its bytes read into one reused buffer and written to the socket.
    static func send(_ files: [String], from bundle: String, port: Int) throws {
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: port, timeout: 10)
        defer { FD.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for path in files {
            let file = try FileDescriptor.open(bundle + "/" + path, .readOnly)
            let size = try FileStatus(descriptor: file.rawValue).size
            var header: [UInt8] = []
            for value in [UInt64(path.utf8.count), UInt64(size)] { withUnsafeBytes(of: value.littleEndian) { header += $0 } }
            try FD.writeAll(fd, header + Array(path.utf8))
            var left = size
            while left > 0 {
                let n = try FD.read(file.rawValue, into: &buffer)
                guard n > 0, n <= left else { throw NodeError.badArgument("the plain copy's source \(path) changed") }
                try buffer.withUnsafeBytes { try FD.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                left -= n
            }
            file.close()
        }
    }

    /// The receiving end of `send`: files until the sender closes, each read into one reused
    /// buffer and written to its file.
    static func receive(listener: Int32, into target: String) throws {
        let fd = try TCPSocket.accept(listener)
        defer { FD.close(fd) }
        var made: Set<String> = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            var first: UInt8 = 0
            var n: Int
            repeat { n = read(fd, &first, 1) } while n < 0 && errno == EINTR
            if n == 0 { return }
            guard n == 1 else { throw NodeError.badArgument("the plain copy's socket failed (errno \(errno))") }
            let header = [first] + (try readBytes(fd, 15))
            let (nameLength, size) = header.withUnsafeBytes {
                (UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)), UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
            guard nameLength < 4096, size < 1 << 30 else { throw NodeError.badArgument("the plain copy's header is wrong") }
            let path = String(decoding: try readBytes(fd, Int(nameLength)), as: UTF8.self)
            let parent = target + "/" + (path.split(separator: "/").dropLast().joined(separator: "/"))
            if made.insert(parent).inserted { try FileIO.makeDirectories(parent) }
            let file = try FileDescriptor.open(target + "/" + path, .writeOnly, options: [.create, .truncate], permissions: 0o644)
            var left = Int(size)
            while left > 0 {
                let count = min(left, buffer.count)
                try buffer.withUnsafeMutableBytes { raw in
                    // The buffer is never empty, so it has a base address.
                    try RankBench.readFully(fd, raw.baseAddress.unsafelyUnwrapped, count)
                    try FD.writeAll(file.rawValue, UnsafeRawBufferPointer(rebasing: raw[0..<count]))
                }
                left -= count
            }
            file.close()
        }
    }

    /// Exactly `count` bytes from the socket.
    static func readBytes(_ fd: Int32, _ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { raw in
            if let base = raw.baseAddress { try RankBench.readFully(fd, base, count) }
        }
        return bytes
    }

    /// SHA-256 of the bundle's files the way the master hashes them (`BundleCollector.hashFile`:
    /// one reused read buffer), on one thread, against `sha256sum` of the same files. Both are
    /// counted in CPU seconds (this thread's; sha256sum's user and system time), so other load on
    /// the machine does not move the figure.
    mutating func hashing(_ files: [String], in bundle: String) throws {
        let megabytes = Double(Self.shipFiles * Self.shipFileSize) / 1e6
        var ours: [Double] = []
        var theirs: [Double] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<(quick ? 1 : 3) {
            let start = CurrentProcess.threadCPUSeconds
            for path in files { _ = try BundleCollector.hashFile(bundle + "/" + path, expecting: nil, digests: nil, buffer: &buffer) }
            ours.append(megabytes / (CurrentProcess.threadCPUSeconds - start))
            let script = "cd '\(bundle)' && exec sha256sum */*"
            let before = CurrentProcess.waitedChildrenCPUSeconds
            try time(["/bin/sh", "-c", script], stdoutPath: "/dev/null", what: "sha256sum")
            theirs.append(megabytes / (CurrentProcess.waitedChildrenCPUSeconds - before))
        }
        let cpuinfo = (try? FileIO.readAll("/proc/cpuinfo")) ?? []  // No cpuinfo: taken as no SHA extensions.
        let extensions = String(decoding: cpuinfo, as: UTF8.self).contains(" sha_ni")
        add(
            "ship: SHA-256 of the 100 MiB bundle (DistrCore)", unit: "MB/CPU s", distr: Self.median(ours), baseline: Self.median(theirs),
            against: "sha256sum of the same files", target: extensions ? .atLeast(1000) : nil)
        notes.append("ship: SHA-256 is counted per CPU second of the hashing thread (sha256sum: its user and system time)")
        if !extensions { notes.append("ship: no SHA extensions on this CPU (no sha_ni): the 1 GB/s SHA-256 target does not apply") }
    }
}
