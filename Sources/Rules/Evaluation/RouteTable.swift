/// Every topic the evaluator has seen, with its route, found by the topic's UTF-8 bytes.
///
/// Looked up once per reading. An open-addressing table of 4-byte indexes into `entries`; each entry holds
/// the topic's full hash (compared before any byte), where its bytes are in one shared buffer, and the route
/// itself. Against a `[String: Route]`: a hash of a few multiplications instead of SipHash, no heap string
/// per topic to miss in cache, nothing to retain. The hash is seeded per table, so topics sent from outside
/// cannot be chosen to collide.
struct RouteTable: Sendable {
    struct Entry: Sendable {
        var hash: UInt64
        var keyStart: Int32
        var keyCount: Int32
        var route: Evaluator.Route
    }

    /// Entry indexes by bucket; `empty` where none. The count is a power of two, at most 7/8 used.
    private var buckets: ContiguousArray<Int32>
    /// Every route, in the order its topic was first seen (indexes never change).
    private(set) var entries: ContiguousArray<Entry> = []
    /// Every topic's UTF-8 bytes, one after the other.
    private var keyBytes: ContiguousArray<UInt8> = []
    private let seed: UInt64
    private static let empty: Int32 = -1

    /// An empty table whose hash starts from `seed`.
    init(seed: UInt64 = .random(in: .min ... .max)) {
        self.seed = seed
        buckets = ContiguousArray(repeating: RouteTable.empty, count: 16)
    }

    var count: Int { entries.count }

    /// The index of `topic`'s entry, if it has one.
    @inline(__always)
    func index(of topic: String) -> Int? {
        if let found = topic.utf8.withContiguousStorageIfAvailable({ index(of: UnsafeRawBufferPointer($0)) }) {
            return found
        }
        return Array(topic.utf8).withUnsafeBytes { index(of: $0) }
    }

    /// The index of the entry whose topic is `bytes`, if there is one.
    func index(of bytes: UnsafeRawBufferPointer) -> Int? {
        let hash = RouteTable.hash(bytes, seed: seed)
        return buckets.withUnsafeBufferPointer { buckets in
            entries.withUnsafeBufferPointer { entries in
                keyBytes.withUnsafeBytes { keyBytes in
                    let mask = buckets.count - 1
                    var bucket = Int(truncatingIfNeeded: hash) & mask
                    while buckets[bucket] != RouteTable.empty {
                        let index = Int(buckets[bucket])
                        let entry = entries[index]
                        if entry.hash == hash, Int(entry.keyCount) == bytes.count,
                            RouteTable.equal(bytes, UnsafeRawBufferPointer(rebasing: keyBytes[entry.byteRange]))
                        {
                            return index
                        }
                        bucket = (bucket + 1) & mask
                    }
                    return nil
                }
            }
        }
    }

    /// Adds `topic` (not in the table yet) with `route`; returns its index.
    @discardableResult
    mutating func insert(_ topic: String, route: Evaluator.Route) -> Int {
        let bytes = Array(topic.utf8)
        let hash = bytes.withUnsafeBytes { RouteTable.hash($0, seed: seed) }
        precondition(keyBytes.count + bytes.count <= Int(Int32.max), "topics over 2 GB")
        let index = entries.count
        entries.append(Entry(hash: hash, keyStart: Int32(keyBytes.count), keyCount: Int32(bytes.count), route: route))
        keyBytes.append(contentsOf: bytes)
        if entries.count > buckets.count - buckets.count / 8 {
            buckets = ContiguousArray(repeating: RouteTable.empty, count: buckets.count * 2)
            for existing in entries.indices { place(Int32(existing), hash: entries[existing].hash) }
        } else {
            place(Int32(index), hash: hash)
        }
        return index
    }

    /// The route of the entry at `index`.
    subscript(route index: Int) -> Evaluator.Route {
        @inline(__always) get { entries[index].route }
        @inline(__always) _modify { yield &entries[index].route }
    }

    /// The topic of the entry at `index`.
    func topic(at index: Int) -> String {
        keyBytes.withUnsafeBufferPointer { String(decoding: $0[entries[index].byteRange], as: UTF8.self) }
    }

    private mutating func place(_ index: Int32, hash: UInt64) {
        let mask = buckets.count - 1
        var bucket = Int(truncatingIfNeeded: hash) & mask
        while buckets[bucket] != RouteTable.empty { bucket = (bucket + 1) & mask }
        buckets[bucket] = index
    }

    /// A 64-bit hash of `bytes`, eight at a time (multiply and fold, then a final mix so that the low bits,
    /// which pick the bucket, depend on every byte).
    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        let multiplier: UInt64 = 0x9E37_79B9_7F4A_7C15
        var hash = seed ^ UInt64(bytes.count) &* multiplier
        var offset = 0
        while offset + 8 <= bytes.count {
            hash = (hash ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* multiplier
            hash ^= hash >> 29
            offset += 8
        }
        if offset < bytes.count {
            var tail: UInt64 = 0
            for position in offset..<bytes.count { tail |= UInt64(bytes[position]) << (8 * (position - offset)) }
            hash = (hash ^ tail) &* multiplier
            hash ^= hash >> 29
        }
        hash = (hash ^ (hash >> 32)) &* 0xD6E8_FEB8_6659_FD93
        return hash ^ (hash >> 32)
    }

    /// Whether two byte ranges of the same count hold the same bytes.
    @inline(__always)
    static func equal(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset + 8 <= left.count {
            guard
                left.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    == right.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            else { return false }
            offset += 8
        }
        while offset < left.count {
            guard left[offset] == right[offset] else { return false }
            offset += 1
        }
        return true
    }
}

extension RouteTable.Entry {
    var byteRange: Range<Int> { Int(keyStart)..<Int(keyStart + keyCount) }
}
