/// Which partition a device's readings go to, as the NATS subject mapping decides it, and the subjects and
/// topics on either side of the mapping.
///
/// The servers map `sensors.<device>.<quantity>` (an MQTT topic `sensors/<device>/<quantity>` through
/// the MQTT listener) to `part.<N>.sensors.<device>.<quantity>` with `{{partition(P,1)}}`: FNV-1a (32 bit)
/// of the device token, modulo P. Computing the same here lets an engine tell which partition owns an
/// instance without asking a server.
public struct DevicePartitioning: Sendable, Hashable {
    /// P.
    public let partitions: Int

    /// Creates the partitioning for P partitions.
    public init(partitions: Int) {
        precondition(partitions > 0)
        self.partitions = partitions
    }

    /// The partition of a device (the topic level after `sensors/`).
    public func partition(ofDevice device: String) -> Int {
        Int(Self.fnv1a(device) % UInt32(partitions))
    }

    /// FNV-1a, 32 bit: nats-server's hash for `partition()`.
    static func fnv1a(_ text: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return hash
    }

    /// The mapping for the servers' configuration (`mappings` block of nats-server).
    public var subjectMapping: (source: String, destination: String) {
        (
            "sensors.*.*",
            "\(PartitionSubjects.readingsToken).{{partition(\(partitions),1)}}.sensors.{{wildcard(1)}}.{{wildcard(2)}}"
        )
    }

    /// The stream subject filter of one partition.
    public func subjectFilter(ofPartition partition: Int) -> String {
        PartitionSubjects.readings(ofPartition: partition)
    }

    /// The MQTT topic a partitioned subject carries (`part.3.sensors.d1.t` → `sensors/d1/t`), and its
    /// partition; nil for a subject that is not a partitioned reading.
    public static func topic(ofSubject subject: String) -> (partition: Int, topic: String)? {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 3, tokens[0] == PartitionSubjects.readingsToken, let partition = Int(tokens[1]) else {
            return nil
        }
        return (partition, tokens[2...].joined(separator: "/"))
    }
}
