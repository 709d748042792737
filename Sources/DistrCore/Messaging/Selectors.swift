/// Which sender a receive accepts: a rank number, or `.any`.
public protocol RankSelector: Sendable {
    var rankFilter: Int? { get }
}

/// Which tag a receive accepts: a tag number, or `.any` (any tag 0 or more).
public protocol TagSelector: Sendable {
    var tagFilter: Int? { get }
}

/// `.any` source: `node.recv(String.self, from: .any)`.
public struct Source: RankSelector, Equatable {
    public let rankFilter: Int?
    public static let any = Source(rankFilter: nil)
    public static func rank(_ rank: Int) -> Source { Source(rankFilter: rank) }
}

/// `.any` tag: `node.recv(Int.self, tag: .any)`.
public struct Tag: TagSelector, Equatable {
    public let tagFilter: Int?
    public static let any = Tag(tagFilter: nil)
    public static func value(_ tag: Int) -> Tag { Tag(tagFilter: tag) }
}

extension RankSelector where Self == Source {
    public static var any: Source { Source.any }
}

extension TagSelector where Self == Tag {
    public static var any: Tag { Tag.any }
}

extension Int: RankSelector, TagSelector {
    public var rankFilter: Int? { self }
    public var tagFilter: Int? { self }
}

/// A received value with the rank and tag it came with.
public struct Received<Value: Sendable>: Sendable {
    public var value: Value
    public var source: Int
    public var tag: Int
}
