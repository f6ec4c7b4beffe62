import NATS
import PartitionLeases

/// What `rules-engine run --nats … --partitions P` needs beyond the MQTT mode's configuration
/// (docs/scale-out.md).
public struct PartitionedEngineConfiguration: Sendable {
    /// The NATS servers (any node of the cluster; the client fails over between them).
    public var servers: [String]
    /// How many partitions the readings are mapped to (the `partition(P,1)` of the servers' mapping).
    public var partitions: Int
    /// This engine's name in the lease bucket, unique among the engines.
    public var engineID: String
    /// How long a lease lasts without renewal: a dead engine's partitions are taken over after it.
    public var leaseTTL: Duration = .seconds(6)
    /// How often each owned partition's state is written to the snapshot bucket (bounds the replay).
    public var snapshotInterval: Duration = .seconds(5)
    /// How often the owner stamps the partition's stream with the time, so timers fire without readings.
    public var tickInterval: Duration = .milliseconds(100)
    /// Replicas of the streams and buckets the engine creates (3 on a 3-node cluster).
    public var replicas: Int = 1
    /// The stream that holds the partitioned readings (`part.>`).
    public var readingsStream = PartitionSubjects.readingsStream
    /// The stream of decisions: one record per stream message that decided something, per partition.
    public var decisionsStream = PartitionSubjects.decisionsStream

    /// Creates a configuration with the defaults above.
    public init(servers: [String], partitions: Int, engineID: String) {
        self.servers = servers
        self.partitions = partitions
        self.engineID = engineID
    }

    /// The subject of partition `partition`'s decision records.
    public static func decisionSubject(_ partition: Int) -> String {
        PartitionSubjects.decisions(ofPartition: partition)
    }

    /// The subject of partition `partition`'s clock ticks (inside the readings stream).
    public static func tickSubject(_ partition: Int) -> String { PartitionSubjects.tick(ofPartition: partition) }

    var natsConfiguration: NATSConfiguration {
        NATSConfiguration(servers: servers, name: engineID)
    }

    func leaseConfiguration() throws -> PartitionLeaseConfiguration {
        try PartitionLeaseConfiguration(partitions: partitions, owner: engineID, ttl: leaseTTL, replicas: replicas)
    }
}
