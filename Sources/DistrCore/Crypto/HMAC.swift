/// HMAC-SHA256 (RFC 2104), incremental, with its key pads computed once.
package struct HMAC: Sendable {
    private var inner: SHA256
    private var outer: SHA256

    package init(key: [UInt8]) {
        var block = key.count > SHA256.blockSize ? SHA256.hash(key) : key
        block += [UInt8](repeating: 0, count: SHA256.blockSize - block.count)
        inner = SHA256()
        inner.update(block.map { $0 ^ 0x36 })
        outer = SHA256()
        outer.update(block.map { $0 ^ 0x5c })
    }

    package mutating func update<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 { inner.update(bytes) }
    package mutating func update(_ buffer: UnsafeRawBufferPointer) { inner.update(buffer) }

    /// Feeds `a` to `first` and `b` to `second` with their blocks hashed two at a time
    /// (`SHA256.update(_:with:_:with:)`).
    package static func update(_ first: inout HMAC, with a: UnsafeRawBufferPointer, _ second: inout HMAC, with b: UnsafeRawBufferPointer) {
        SHA256.update(&first.inner, with: a, &second.inner, with: b)
    }

    package mutating func finalize() -> [UInt8] {
        let innerDigest = inner.finalize()
        outer.update(innerDigest)
        return outer.finalize()
    }

    package static func authenticate(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        var mac = HMAC(key: key)
        mac.update(message)
        return mac.finalize()
    }
}

/// Compares two byte strings in time that depends only on their lengths, so a MAC check leaks
/// nothing about where the first wrong byte is.
package func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count { difference |= a[i] ^ b[i] }
    return difference == 0
}

/// Random bytes from the kernel (getrandom via SystemRandomNumberGenerator).
package func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var out: [UInt8] = []
    out.reserveCapacity(count + 8)
    while out.count < count { withUnsafeBytes(of: generator.next()) { out.append(contentsOf: $0) } }
    return Array(out.prefix(count))
}

extension Array where Element == UInt8 {
    package var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses lowercase or uppercase hex; nil on odd length or a non-hex character.
    package init?(hex: some StringProtocol) {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var i = 0
        while i < chars.count {
            guard let high = value(chars[i]), let low = value(chars[i + 1]) else { return nil }
            out.append(high << 4 | low)
            i += 2
        }
        self = out
    }
}
