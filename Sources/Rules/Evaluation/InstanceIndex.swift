/// Every instance's slot, found by its rule and captured values.
///
/// An open-addressing table of slots, 4 bytes each, whose keys are the instances themselves: a dictionary
/// per rule kept a second reference to each instance's labels beside the slot, about 20 bytes per instance
/// at 100,000 of them, against 5 to 10 here. Hashes are computed again when the table grows (rare; lookups
/// happen when a topic is first resolved, not per reading).
struct InstanceIndex: Sendable {
    /// Slots by bucket; `empty` where none. The count is a power of two.
    private var buckets: [Int32]
    private(set) var count = 0
    private static let empty: Int32 = -1

    /// An empty index.
    init() {
        buckets = Array(repeating: InstanceIndex.empty, count: 8)
    }

    /// An index of every instance in `instances` (their keys are distinct).
    init(of instances: ContiguousArray<Evaluator.Instance>) {
        var capacity = 8
        while capacity - capacity / 8 <= instances.count { capacity *= 2 }
        buckets = Array(repeating: InstanceIndex.empty, count: capacity)
        for slot in instances.indices {
            place(Int32(slot), hash: InstanceIndex.hash(rule: instances[slot].rule, labels: instances[slot].labels))
        }
        count = instances.count
    }

    /// The slot of the instance of `rule` with `labels`, if there is one.
    func slot(rule: Int32, labels: [String], in instances: ContiguousArray<Evaluator.Instance>) -> Int32? {
        let mask = buckets.count - 1
        var bucket = InstanceIndex.hash(rule: rule, labels: labels) & mask
        while buckets[bucket] != InstanceIndex.empty {
            let slot = buckets[bucket]
            if instances[Int(slot)].rule == rule, instances[Int(slot)].labels == labels { return slot }
            bucket = (bucket + 1) & mask
        }
        return nil
    }

    /// Adds the instance at `slot` (not in the index yet), growing the table when it is seven-eighths full.
    mutating func insert(slot: Int32, in instances: ContiguousArray<Evaluator.Instance>) {
        if count + 1 > buckets.count - buckets.count / 8 {
            let old = buckets
            buckets = Array(repeating: InstanceIndex.empty, count: old.count * 2)
            for existing in old where existing != InstanceIndex.empty {
                let instance = instances[Int(existing)]
                place(existing, hash: InstanceIndex.hash(rule: instance.rule, labels: instance.labels))
            }
        }
        place(slot, hash: InstanceIndex.hash(rule: instances[Int(slot)].rule, labels: instances[Int(slot)].labels))
        count += 1
    }

    private mutating func place(_ slot: Int32, hash: Int) {
        let mask = buckets.count - 1
        var bucket = hash & mask
        while buckets[bucket] != InstanceIndex.empty { bucket = (bucket + 1) & mask }
        buckets[bucket] = slot
    }

    private static func hash(rule: Int32, labels: [String]) -> Int {
        var hasher = Hasher()
        hasher.combine(rule)
        hasher.combine(labels)
        return hasher.finalize()
    }
}
