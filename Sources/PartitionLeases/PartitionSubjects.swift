/// The NATS subjects and streams of the scale-out mode, spelled in one place: the partitioned readings
/// (`part.<partition>.sensors.<device>.<quantity>`, and each partition's clock ticks), and the decision records
/// (`decisions.<partition>`).
public enum PartitionSubjects {
    /// The first token of every partitioned subject.
    static let readingsToken = "part"
    static let decisionsToken = "decisions"

    /// The default names of the two streams.
    public static let readingsStream = "READINGS"
    public static let decisionsStream = "DECISIONS"

    /// The readings stream's subjects: every partition's readings and ticks.
    public static let allReadings = "\(readingsToken).>"
    /// The decisions stream's subjects.
    public static let allDecisions = "\(decisionsToken).>"

    /// One partition's readings and ticks.
    public static func readings(ofPartition partition: Int) -> String { "\(readingsToken).\(partition).>" }
    /// One partition's clock ticks (inside the readings stream).
    public static func tick(ofPartition partition: Int) -> String { "\(readingsToken).\(partition).tick" }
    /// One partition's decision records.
    public static func decisions(ofPartition partition: Int) -> String { "\(decisionsToken).\(partition)" }
}
