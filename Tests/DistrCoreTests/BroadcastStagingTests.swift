import Testing

@testable import DistrCore

@Suite struct BroadcastStagingTests {
    @Test func hugePageRegion_startsOnA2MiBBoundaryAndHoldsWholeHugePages() throws {
        let region = try HugePageRegion(byteCount: 3 << 20 + 1)
        let base = try #require(region.bytes.baseAddress)
        #expect(Int(bitPattern: base) % (2 << 20) == 0)
        #expect(region.bytes.count == 4 << 20)
        region.bytes.storeBytes(of: 0x5A, toByteOffset: region.bytes.count - 1, as: UInt8.self)
        #expect(region.bytes.load(fromByteOffset: region.bytes.count - 1, as: UInt8.self) == 0x5A)
    }

    @Test func hugePageRegion_refusesSizesThatCannotBeMapped() {
        for size in [0, -1, Int.max] {
            #expect(throws: SystemError.self, "\(size)") { _ = try HugePageRegion(byteCount: size) }
        }
    }

    @Test(arguments: [true, false])
    func staging_copiesTheArrayAndReusesItsRegionForTheNextBroadcast(shared: Bool) throws {
        let staging = BroadcastStaging()
        let first = (0..<(3 << 17)).map { Double($0) * 0.5 }
        let region = try #require(first.withUnsafeBytes { staging.stage($0, shared: shared) })
        #expect((region.segment != nil) == shared)
        #expect(first.withUnsafeBytes { $0.elementsEqual(region.bytes[..<$0.count]) })
        staging.giveBack(region)
        // A smaller array goes into the region kept from the first.
        let second = (0..<70_001).map { Int32(truncatingIfNeeded: $0 &* 7919) }
        // (Reused whatever it is made of: a root whose segment could not be made does not map
        // fresh huge pages for every broadcast.)
        let again = try #require(second.withUnsafeBytes { staging.stage($0) })
        #expect(again === region)
        #expect(second.withUnsafeBytes { $0.elementsEqual(again.bytes[..<$0.count]) })
        // While a broadcast holds the kept region, another gets a region of its own.
        let other = try #require(second.withUnsafeBytes { staging.stage($0, shared: shared) })
        #expect(other !== again)
        #expect(staging.count == 3)
    }

    @Test func staging_leavesArraysOverTheLimitWhereTheyAre() {
        let staging = BroadcastStaging()
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: BroadcastStaging.keptLimit + 8, alignment: 16)
        defer { bytes.deallocate() }
        #expect(staging.stage(UnsafeRawBufferPointer(bytes)) == nil)
        #expect(staging.stage(UnsafeRawBufferPointer(rebasing: bytes[..<0])) == nil)
        #expect(staging.count == 0)
    }

    /// A reader maps the root's segment through /proc/PID/fd/N (here this process's own), copies
    /// out of it, and keeps the mapping for the next broadcast; an offer naming another inode, no
    /// segment, or more bytes than the segment holds is left to the process-memory read.
    @Test func mappedRegions_copyOutOfTheRootsSegmentAndKeepTheMapping() throws {
        let staging = BroadcastStaging()
        let values = (0..<200_003).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let region = try #require(values.withUnsafeBytes { staging.stage($0) })
        let segment = try #require(region.segment)
        func offer(inode: UInt64 = segment.inode, descriptor: Int32 = segment.descriptor, count: Int = values.count) -> MemoryOffer {
            MemoryOffer(
                pid: CurrentProcess.id, address: UInt64(UInt(bitPattern: region.bytes.baseAddress)), byteCount: count, elementCode: 0,
                identity: 0, identityAddress: 0, segment: descriptor, segmentInode: inode)
        }
        let regions = MappedRegions()
        var copy = [UInt8](repeating: 0, count: values.count - 100)
        #expect(copy.withUnsafeMutableBytes { regions.copy(offer(), at: 100, into: $0) })
        #expect(copy == Array(values[100...]))
        var again = [UInt8](repeating: 0, count: values.count)
        #expect(again.withUnsafeMutableBytes { regions.copy(offer(), at: 0, into: $0) })
        #expect(again == values && regions.count == 1)
        #expect(!again.withUnsafeMutableBytes { regions.copy(offer(inode: segment.inode + 1), at: 0, into: $0) })
        #expect(!again.withUnsafeMutableBytes { regions.copy(offer(descriptor: -1), at: 0, into: $0) })
        var tooMany = [UInt8](repeating: 0, count: region.bytes.count + 1)
        #expect(!tooMany.withUnsafeMutableBytes { regions.copy(offer(), at: 0, into: $0) })
        #expect(regions.count == 1)
    }

    /// The streaming copy (non-temporal stores) gives memcpy's bytes for every alignment of
    /// either side and every length around its 16-byte head and 64-byte steps.
    @Test func copyStreaming_givesTheSameBytesAsACopy() {
        let source = (0..<4_200).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) }
        for length in [0, 1, 15, 16, 17, 63, 64, 65, 127, 1_000, 4_000] {
            for from in 0..<17 {
                for to in [0, 1, 8, 15, 16, 33] {
                    var destination = [UInt8](repeating: 0xEE, count: length + to + 8)
                    source.withUnsafeBytes { raw in
                        destination.withUnsafeMutableBytes {
                            Memory.copyStreaming(
                                UnsafeRawBufferPointer(rebasing: raw[from..<from + length]), to: UnsafeMutableRawBufferPointer(rebasing: $0[to...]))
                        }
                    }
                    #expect(Array(destination[to..<to + length]) == Array(source[from..<from + length]), "length \(length), from \(from), to \(to)")
                    #expect(destination[..<to].allSatisfy { $0 == 0xEE } && destination[(to + length)...].allSatisfy { $0 == 0xEE })
                }
            }
        }
    }
}
