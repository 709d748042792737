import Synchronization

/// Where the root of a broadcast copies its array before offering it to several ranks of its
/// worker. `process_vm_readv` pins the source page by page: out of 4 KiB pages an 8 MB read costs
/// 1.2-1.75 ms of CPU on the machines measured, out of huge pages 0.6-1.1 ms, and one copy into
/// huge pages costs the root about 0.7 ms. So the root copies once when two or more ranks read
/// its offer, and keeps the region (at most `keptLimit` bytes) for the next broadcast: a fresh
/// mapping would fault its pages in again every time.
final class BroadcastStaging: Sendable {
    private let kept = Mutex<HugePageRegion?>(nil)
    private let staged = Atomic<Int>(0)

    /// The largest region kept between broadcasts; larger arrays are offered from where they are.
    static let keptLimit = 64 << 20

    /// A region of at least `byteCount` bytes holding a copy of `source`, or nil when the array
    /// is too large to stage or no memory can be mapped (the caller then offers `source` itself).
    /// Only one broadcast uses a region at a time: the kept one is taken out until `giveBack`.
    func stage(_ source: UnsafeRawBufferPointer) -> HugePageRegion? {
        guard source.count > 0, source.count <= Self.keptLimit else { return nil }
        let reused = kept.withLock { slot -> HugePageRegion? in
            guard let region = slot, region.bytes.count >= source.count else { return nil }
            slot = nil
            return region
        }
        let mapped = reused == nil ? try? HugePageRegion(byteCount: source.count) : nil  // No memory: offer the array itself, only slower.
        guard let region = reused ?? mapped else { return nil }
        UnsafeMutableRawBufferPointer(rebasing: region.bytes[..<source.count]).copyMemory(from: source)
        staged.add(1, ordering: .relaxed)
        return region
    }

    /// Keeps `region` for the next broadcast (the larger of it and the one kept, if any).
    func giveBack(_ region: HugePageRegion) {
        kept.withLock { slot in
            if (slot?.bytes.count ?? 0) < region.bytes.count { slot = region }
        }
    }

    /// How many broadcasts this rank staged (for tests and diagnostics).
    var count: Int { staged.load(ordering: .relaxed) }
}
