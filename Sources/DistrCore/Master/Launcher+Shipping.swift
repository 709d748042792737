import Synchronization

/// Shipping a job's files to one worker: the frames of file data, and the digests that follow
/// files hashed while they are sent (docs/protocol.md, "Hashing").
extension Launcher {
    /// Streams the files' bytes in frames of 256 KiB (what a cancel may wait behind), until they
    /// are all sent or `stopped` says the job was cancelled (checked before each frame). The
    /// stream runs on across files, so small files share a frame, and the kernel takes each
    /// frame's payload from the files (`Connection.sendFromFiles`): file bytes are never copied
    /// into this process, once per worker, nor from it into the socket.
    func sendFiles(_ sources: [(index: Int, source: BundleSource)], over connection: Connection, until stopped: () -> Bool)
        throws(ShippingError)
    {
        let payloadSize = 256 << 10
        var pieces: [(fd: Int32, offset: Int, count: Int)] = []
        var piecePaths: [String] = []
        /// Files whose digest follows their bytes and whose last piece is in `pieces`: the frame
        /// is followed by their digests (`fileDigests`), waited for if still being hashed.
        var lateInFrame: [(index: Int, late: LateDigest, path: String)] = []
        /// Files whose last piece is in `pieces`, closed once the frame is sent; as many of them
        /// as `DescriptorBudget.shipping` let this thread keep (a frame of small files is sent
        /// early when it lets no more be kept).
        var finished: [Int32] = []
        var kept = 0
        func closeFinished() {
            for fd in finished { FD.close(fd) }
            finished = []
            DescriptorBudget.shipping.release(kept)
            kept = 0
        }
        /// The file whose pieces are being added (closed by the `defer` if sending stops in it).
        var current: Int32?
        defer {
            closeFinished()
            if let current { FD.close(current) }
        }
        var filled = 0
        /// Sends the pieces gathered; false when the connection broke (the reading loop reports it).
        func flush() throws(ShippingError) -> Bool {
            defer {
                pieces = []
                piecePaths = []
                filled = 0
                closeFinished()
            }
            guard filled > 0 else { return true }
            let outcome: Result<Int?, FileReadFailure>
            do { outcome = try connection.sendFromFiles(type: ControlMessage.fileDataType, pieces: pieces) } catch { return false }
            switch outcome {
            case .success(nil): break
            case .success(let shrunk?): throw .changed(piecePaths[shrunk])
            case .failure(let failure): throw .cannotRead(piecePaths[failure.piece], failure.error)
            }
            guard !lateInFrame.isEmpty else { return true }
            defer { lateInFrame = [] }
            var digests: [FileDigest] = []
            for file in lateInFrame {
                do { digests.append(FileDigest(index: file.index, digest: try file.late.wait())) } catch { throw .notHashed(file.path, error) }
            }
            do { try connection.send(.fileDigests(digests)) } catch { return false }
            return true
        }
        // An empty file has no bytes to send: it is made from the manifest.
        for (index, source) in sources where source.entry.size > 0 {
            let file: FileDescriptor
            do { file = try FileDescriptor.open(source.localPath, .readOnly) } catch { throw .cannotRead(source.localPath, error) }
            let fd = file.release()
            current = fd
            var offset = 0
            while offset < source.entry.size {
                if filled == payloadSize {
                    if stopped() { return }
                    guard try flush() else { return }
                }
                let count = min(payloadSize - filled, source.entry.size - offset)
                pieces.append((fd, offset, count))
                piecePaths.append(source.localPath)
                filled += count
                offset += count
            }
            finished.append(fd)
            current = nil
            if let late = source.late { lateInFrame.append((index, late, source.localPath)) }
            if DescriptorBudget.shipping.take() {
                kept += 1
            } else {
                if stopped() { return }
                guard try flush() else { return }
            }
        }
        if stopped() { return }
        _ = try flush()
    }
}

/// A shipped file that could not be sent as it was hashed.
enum ShippingError: Error, CustomStringConvertible {
    case cannotRead(String, SystemError)
    case changed(String)
    /// A file hashed while it was sent could not be read for its digest.
    case notHashed(String, BundleError)

    var description: String {
        switch self {
        case .cannotRead(let path, let error):
            "cannot read '\(path)' to ship it (\(error.reason)); did it vanish after distr-master started?"
        case .changed(let path): "'\(path)' shrank while it was being shipped; ship files that nothing is writing"
        case .notHashed(let path, let error): "cannot hash '\(path)' to ship it (\(error)); did it vanish after distr-master started?"
        }
    }
}
