import ArgumentParser
import FileFormats
import Foundation
import PartitionedEngine

/// `rules-engine run --nats …`: the scale-out mode's options (docs/scale-out.md).
struct ScaleOutOptions: ParsableArguments {
    @Option(
        help:
            "Read partitioned readings from this NATS JetStream cluster instead of MQTT (nodes comma-separated or repeated)."
    )
    var nats: [String] = []
    @Option(help: "With --nats: the partition count of the servers' mapping (partition(P,1)).")
    var partitions: Int?
    @Option(help: "With --nats: this engine's name among the engines (default: host name and process id).")
    var engineID: String?
    @Option(help: "With --nats: how long a lease lasts unrenewed; a dead engine's partitions move after it.")
    var leaseTTL: String = "6s"
    @Option(help: "With --nats: how often each owned partition's state is saved (bounds a takeover's replay).")
    var snapshotInterval: String = "5s"
    @Option(help: "With --nats: replicas of the streams and buckets the engines create (3 on a 3-node cluster).")
    var replicas: Int = 1

    var isEnabled: Bool { !nats.isEmpty }

    /// The partitioned mode's configuration; what it does not support yet is refused by name.
    func configuration(for run: Run) throws -> PartitionedEngineConfiguration {
        guard let partitions else { throw ValidationError("--nats needs --partitions P (the servers' mapping)") }
        let unsupported: [(String, Bool)] = [
            ("--state-dir", run.stateDir != nil), ("--http", run.http != nil),
            ("--alertmanager", !run.alertmanager.isEmpty),
            ("--ha-discovery", run.haDiscovery), ("--announce-transitions", run.announceTransitions),
        ]
        for (option, given) in unsupported where given {
            throw ValidationError("\(option) is not available with --nats yet (docs/scale-out.md)")
        }
        let engineID = self.engineID ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        let servers = nats.flatMap { $0.split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) } }
        for server in servers where !(server.hasPrefix("nats://") || server.hasPrefix("tls://")) {
            throw ValidationError("--nats '\(server)' is not a nats:// URL (e.g. nats://127.0.0.1:4222)")
        }
        var configuration = PartitionedEngineConfiguration(
            servers: servers,
            partitions: partitions,
            engineID: engineID.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" }.reduce("") {
                $0 + String($1)
            }
        )
        guard let ttl = RuleDuration.milliseconds(leaseTTL), ttl >= 1000 else {
            throw ValidationError("--lease-ttl '\(leaseTTL)' is not a duration of at least 1s")
        }
        guard let interval = RuleDuration.milliseconds(snapshotInterval), interval > 0 else {
            throw ValidationError("--snapshot-interval '\(snapshotInterval)' is not a duration")
        }
        guard (1...5).contains(replicas) else { throw ValidationError("--replicas must be 1 to 5") }
        configuration.leaseTTL = .milliseconds(ttl)
        configuration.snapshotInterval = .milliseconds(interval)
        configuration.replicas = replicas
        return configuration
    }
}
