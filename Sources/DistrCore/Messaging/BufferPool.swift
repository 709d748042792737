import Synchronization

/// Arrays handed back by `recv(into:)`, reused for the next message of the same element type
/// and length. Large receives into recycled storage skip the page faults and zero-filling of
/// fresh memory (glibc returns blocks over 32 MiB to the kernel on every free).
final class BufferPool: Sendable {
    static let maxArrays = 4
    private let arrays = Mutex<[any RawNumericArray]>([])

    func give(_ array: any RawNumericArray) {
        guard array.rawByteCount >= 64 * 1024 else { return }
        arrays.withLock { pool in
            if pool.count >= Self.maxArrays { pool.removeFirst() }
            pool.append(array)
        }
    }

    func take(code: UInt8, count: Int) -> (any RawNumericArray)? {
        arrays.withLock { pool in
            guard let index = pool.firstIndex(where: { $0.rawElementCode == code && $0.elementCount == count }) else { return nil }
            return pool.remove(at: index)
        }
    }
}
