import Synchronization

/// Where the root of a broadcast copies its array before offering it to several ranks of its
/// worker: a shared-memory segment (a `memfd`) that the readers map, through
/// `/proc/PID/fd/N`, and copy out of (`MappedRegions`). Reading with `process_vm_readv` instead
/// makes the kernel pin the source page by page: on the 2-core VM, seven readers copying 8 MB at
/// once took 6.5-7.3 ms (wall) out of huge pages and 3.9-4.5 ms out of a shared mapping, the
/// root's copy in included (a C harness; docs/performance.md, "Session 22"). Where no segment can
/// be made, the root stages in huge pages (`process_vm_readv` reads those about twice as fast as
/// 4 KiB ones). The root copies once when two or more ranks read its offer, and keeps the region
/// (at most `keptLimit` bytes) for the next broadcast: a fresh one would fault its pages in again
/// every time, in the root and, for a segment, in every reader (`MappedRegions` keeps theirs).
final class BroadcastStaging: Sendable {
    private let kept = Mutex<StagingRegion?>(nil)
    private let staged = Atomic<Int>(0)

    /// The largest region kept between broadcasts; larger arrays are offered from where they are.
    static let keptLimit = 64 << 20

    /// A region of at least `byteCount` bytes holding a copy of `source`, or nil when the array
    /// is too large to stage or no memory can be mapped (the caller then offers `source` itself).
    /// Only one broadcast uses a region at a time: the kept one is taken out until `giveBack`.
    /// `shared` false: a new region is made of huge pages, as where no segment can be made (for
    /// tests of that path). A kept region is reused whatever it is made of.
    func stage(_ source: UnsafeRawBufferPointer, shared: Bool = true) -> StagingRegion? {
        guard source.count > 0, source.count <= Self.keptLimit else { return nil }
        let reused = kept.withLock { slot -> StagingRegion? in
            guard let region = slot, region.bytes.count >= source.count else { return nil }
            slot = nil
            return region
        }
        guard let region = reused ?? StagingRegion.make(byteCount: source.count, shared: shared) else { return nil }
        // Copied through the cache (the readers read it next): streaming it past the cache, as
        // the readers do theirs, measured no faster.
        UnsafeMutableRawBufferPointer(rebasing: region.bytes[..<source.count]).copyMemory(from: source)
        staged.add(1, ordering: .relaxed)
        return region
    }

    /// Keeps `region` for the next broadcast (the larger of it and the one kept, if any).
    func giveBack(_ region: StagingRegion) {
        kept.withLock { slot in
            if (slot?.bytes.count ?? 0) < region.bytes.count { slot = region }
        }
    }

    /// How many broadcasts this rank staged (for tests and diagnostics).
    var count: Int { staged.load(ordering: .relaxed) }
}

/// A broadcast root's staging region: a shared segment whose descriptor stays open (readers open
/// it as `/proc/PID/fd/N`), or private huge pages.
final class StagingRegion: Sendable {
    private let shared: SharedMemory?
    private let descriptor: FileDescriptor?
    private let huge: HugePageRegion?
    /// The segment's descriptor in this process and its inode (which the reader checks), or nil
    /// for huge pages.
    let segment: (descriptor: Int32, inode: UInt64)?

    private init(shared: SharedMemory?, descriptor: consuming FileDescriptor?, segment: (Int32, UInt64)?, huge: HugePageRegion?) {
        self.shared = shared
        self.segment = segment
        self.descriptor = descriptor
        self.huge = huge
    }

    /// A shared segment of `byteCount` bytes, or huge pages when `shared` is false or no segment
    /// can be made; nil when neither can be mapped.
    static func make(byteCount: Int, shared: Bool) -> StagingRegion? {
        if shared {
            do {
                let fd = FileDescriptor(adopting: try SharedMemory.create(size: byteCount, name: "distr-broadcast"))
                let memory = try SharedMemory(mapping: fd.rawValue, minimumSize: byteCount, maximumSize: byteCount)
                let segment = (fd.rawValue, try FileStatus(descriptor: fd.rawValue).inode)
                return StagingRegion(shared: memory, descriptor: fd, segment: segment, huge: nil)
            } catch {
                // No segment (memfd refused, or no memory): huge pages, read the slower way.
            }
        }
        do {
            return StagingRegion(shared: nil, descriptor: nil, segment: nil, huge: try HugePageRegion(byteCount: byteCount))
        } catch {
            return nil  // No memory: the array is offered from where it is, only slower.
        }
    }

    /// The region's memory (fixed while the region lives).
    var bytes: UnsafeMutableRawBufferPointer {
        if let shared { return UnsafeMutableRawBufferPointer(start: shared.base, count: shared.size) }
        return huge?.bytes ?? UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }
}

/// The broadcast segments this rank has mapped to read offers from (by process, descriptor and
/// inode), kept for the next broadcast from the same root: mapping 8 MB again costs 2,048 page
/// faults. At most `limit` are kept; a newer segment of the same root and descriptor replaces
/// the one before.
final class MappedRegions: Sendable {
    private struct Key: Hashable {
        var pid: Int32
        var descriptor: Int32
        var inode: UInt64
    }

    private let mapped = Mutex<[(key: Key, memory: SharedMemory)]>([])
    static let limit = 4

    /// Copies `destination.count` bytes at `offset` of the segment `offer` names into
    /// `destination`. False when the segment cannot be opened or mapped here, or is not the one
    /// the offer names (the caller then reads the offering process's memory instead).
    func copy(_ offer: MemoryOffer, at offset: Int, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        guard offer.segment >= 0, let memory = memory(for: offer), offset + destination.count <= memory.size else { return false }
        // The array is the reader's result, not read again here soon: streamed past the cache
        // (the copy was 15% faster so, docs/performance.md "Session 22").
        Memory.copyStreaming(UnsafeRawBufferPointer(start: memory.base + offset, count: destination.count), to: destination)
        return true
    }

    private func memory(for offer: MemoryOffer) -> SharedMemory? {
        let key = Key(pid: offer.pid, descriptor: offer.segment, inode: offer.segmentInode)
        if let known = mapped.withLock({ list in list.first { $0.key == key }?.memory }) { return known }
        let memory: SharedMemory
        do {
            let fd = try FileDescriptor.open("/proc/\(offer.pid)/fd/\(offer.segment)", .readOnly)
            guard try FileStatus(descriptor: fd.rawValue).inode == offer.segmentInode else { return nil }
            memory = try SharedMemory(mapping: fd.rawValue, minimumSize: offer.byteCount, maximumSize: BroadcastStaging.keptLimit, readOnly: true)
        } catch {
            return nil  // Not readable from here (another user, a hardened /proc): the caller reads the process's memory.
        }
        mapped.withLock { list in
            list.removeAll { $0.key.pid == key.pid && $0.key.descriptor == key.descriptor }
            if list.count >= Self.limit { list.removeFirst() }
            list.append((key, memory))
        }
        return memory
    }

    /// How many segments are mapped (for tests).
    var count: Int { mapped.withLock { $0.count } }
}
