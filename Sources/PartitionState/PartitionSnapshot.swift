import Rules

/// One partition's evaluator state at one point of its stream: what a new owner starts from.
public struct PartitionSnapshot: Sendable, Hashable, Codable {
    /// The partition.
    public var partition: Int
    /// The lease epoch of the owner that wrote it.
    public var epoch: UInt64
    /// The last stream sequence the state includes: a new owner reads on from the next one.
    public var lastSequence: UInt64
    /// The evaluator's time at the snapshot (milliseconds since the Unix epoch).
    public var time: Int64
    /// Every instance of the partition.
    public var instances: [InstanceSnapshot]
    /// The last `seq` evaluated per topic (loss and duplicate accounting).
    public var sequences: [String: Int64]

    /// Creates a snapshot.
    public init(
        partition: Int,
        epoch: UInt64,
        lastSequence: UInt64,
        time: Int64,
        instances: [InstanceSnapshot],
        sequences: [String: Int64] = [:]
    ) {
        self.partition = partition
        self.epoch = epoch
        self.lastSequence = lastSequence
        self.time = time
        self.instances = instances
        self.sequences = sequences
    }
}
