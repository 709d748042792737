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

    @Test func staging_copiesTheArrayAndReusesItsRegionForTheNextBroadcast() throws {
        let staging = BroadcastStaging()
        let first = (0..<(3 << 17)).map { Double($0) * 0.5 }
        let region = try #require(first.withUnsafeBytes { staging.stage($0) })
        #expect(first.withUnsafeBytes { $0.elementsEqual(region.bytes[..<$0.count]) })
        staging.giveBack(region)
        // A smaller array goes into the region kept from the first.
        let second = (0..<70_001).map { Int32(truncatingIfNeeded: $0 &* 7919) }
        let again = try #require(second.withUnsafeBytes { staging.stage($0) })
        #expect(again === region)
        #expect(second.withUnsafeBytes { $0.elementsEqual(again.bytes[..<$0.count]) })
        // While a broadcast holds the kept region, another gets a region of its own.
        let other = try #require(second.withUnsafeBytes { staging.stage($0) })
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
}
