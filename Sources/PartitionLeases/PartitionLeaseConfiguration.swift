/// How an engine takes part in sharing partitions.
public struct PartitionLeaseConfiguration: Sendable {
    /// P: readings are partitioned by device into this many partitions (the subject mapping's `partition(P, …)`).
    public var partitions: Int
    /// This engine's name: unique among the engines, letters, digits, `-` and `_`.
    public var owner: String
    /// The key-value bucket of leases and member keys.
    public var bucket: String
    /// A lease not renewed for this long expires and another engine may take the partition.
    public var ttl: Duration
    /// Copies of the bucket in a NATS cluster (3 survives the loss of one server).
    public var replicas: Int

    /// Creates a configuration; throws when the owner name cannot be a key.
    public init(
        partitions: Int,
        owner: String,
        bucket: String = "sensor-pipeline-leases",
        ttl: Duration = .seconds(6),
        replicas: Int = 1
    ) throws {
        guard partitions > 0 else { throw PartitionLeaseError("--partitions must be at least 1, not \(partitions)") }
        guard !owner.isEmpty, owner.utf8.allSatisfy({ Self.isKeyCharacter($0) }) else {
            throw PartitionLeaseError("the engine id '\(owner)' may only have letters, digits, '-' and '_'")
        }
        guard ttl >= .seconds(1) else { throw PartitionLeaseError("the lease TTL must be at least 1s") }
        self.partitions = partitions
        self.owner = owner
        self.bucket = bucket
        self.ttl = ttl
        self.replicas = replicas
    }

    /// Renewals run three times per TTL, so one lost renewal does not lose the lease.
    public var renewInterval: Duration { ttl / 3 }

    /// A lease counts as lost when no renewal was confirmed for this long: the TTL less a margin for the
    /// server's expiry and a rival's create, so this engine has stopped before anyone else can start.
    public var ownershipWindow: Duration { ttl * 3 / 4 }

    /// The key of a partition's lease.
    public static func leaseKey(_ partition: Int) -> String { "partition.\(partition)" }

    /// The key an engine keeps alive to be counted as a member.
    public static func memberKey(_ owner: String) -> String { "member.\(owner)" }

    private static func isKeyCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
            return true
        default: return false
        }
    }
}

/// A configuration or protocol error of partition leases.
public struct PartitionLeaseError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
