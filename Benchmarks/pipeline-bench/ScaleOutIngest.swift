import Foundation
import Logging
import MQTTTestSupport
import NATS
import NATSTestSupport
import PartitionLeases

/// Scenario 9: what it costs to get readings into the scale-out layout (docs/scale-out.md): QoS 1 readings from
/// the raw libmosquitto publisher into nats-server's MQTT listener, through the partition mapping, into the
/// JetStream stream the engines would read; next to the same load into mosquitto. No engine runs.
enum ScaleOutIngest {
    struct Result {
        var readingsPerSecond: Double
        /// Broker CPU (all nodes) per reading, in microseconds.
        var cpuMicrosecondsPerReading: Double
        var stored: UInt64
        var stalled: Bool
    }

    static let prefix = "ingest"

    static func configuration(partitions: Int) -> String {
        let mapping = DevicePartitioning(partitions: partitions).subjectMapping
        let source = mapping.source.replacingOccurrences(of: "sensors.", with: "\(prefix).sensors.")
        return "mappings = { \"\(source)\": \"\(mapping.destination)\" }"
    }

    /// One run into mosquitto: the load and the broker's CPU.
    static func intoMosquitto(_ broker: TestBroker, count: Int) async throws -> Result {
        let pid = broker.processID ?? 0
        let before = cpuSeconds(pid)
        let load = try await runLoad([
            "throughput", "\(broker.port)", "1", "\(count)", "1000", prefix, "\(prefix)/other/#", "0",
        ])
        let cpu = cpuSeconds(pid) - before
        let seconds = max(load["seconds"] ?? 1, 1e-9)
        return Result(
            readingsPerSecond: Double(count) / seconds,
            cpuMicrosecondsPerReading: cpu / Double(count) * 1e6,
            stored: UInt64(count),
            stalled: (load["received"] ?? 0) < 1
        )
    }

    /// One run into `nodes` nats-servers (a cluster when more than one; all on this machine), the stream on as
    /// many replicas.
    static func intoNATS(nodes count: Int, readings: Int, natively: Bool = false) async throws -> Result {
        let extra = configuration(partitions: 16)
        var nodes: [TestNATSServer] = []
        if count == 1 {
            nodes.append(try await TestNATSServer(mqtt: true, extraConfiguration: extra))
        } else {
            let ports = try TestNATSServer.clusterPorts(count)
            for index in 0..<count {
                nodes.append(
                    try await TestNATSServer(mqtt: index == 0, cluster: (ports, index), extraConfiguration: extra)
                )
            }
            for node in nodes { try await node.waitUntilReady() }
        }
        do {
            let result = try await measure(nodes, readings: readings, natively: natively)
            for node in nodes { await node.stop() }
            return result
        } catch {
            for node in nodes { await node.stop() }
            throw error
        }
    }

    private static func measure(_ nodes: [TestNATSServer], readings: Int, natively: Bool) async throws -> Result {
        let connection = try await NATSConnection.connect(
            NATSConfiguration(servers: nodes.map(\.url), name: "pipeline-bench", requestTimeout: .seconds(2)),
            logger: Logger(label: "pipeline-bench")
        )
        defer { connection.close() }
        // A new cluster elects its JetStream leader first.
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                try await connection.createStream(
                    named: PartitionSubjects.readingsStream,
                    subjects: [PartitionSubjects.allReadings],
                    replicas: nodes.count
                )
                break
            } catch  where ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        let pids = nodes.compactMap(\.processID)
        let before = pids.map(cpuSeconds).reduce(0, +)
        let started = ContinuousClock.now
        var load: [String: Double] = ["received": 1]
        if natively {
            // Core NATS publishes (the stream stores them; no acknowledgement is awaited), then wait for all.
            for index in 0..<readings {
                let payload = "{\"value\":23.5,\"seq\":\(index / 1000 + 1)}"
                try connection.publish(Array(payload.utf8), to: "\(prefix).sensors.dev-\(index % 1000).temperature")
            }
            try await connection.flush()
        } else {
            load = try await runLoad([
                "throughput", "\(nodes[0].mqttPort ?? 0)", "1", "\(readings)", "1000", prefix, "\(prefix)/other/#", "0",
            ])
        }
        // The stream may still be storing what the listener acknowledged: wait for it, boundedly.
        var stored: UInt64 = 0
        for _ in 0..<200 {
            stored = (try? await connection.messageCount(inStream: PartitionSubjects.readingsStream)) ?? 0
            if stored >= UInt64(readings) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let cpu = pids.map(cpuSeconds).reduce(0, +) - before
        let seconds = max(natively ? pipeline_bench.seconds(ContinuousClock.now - started) : load["seconds"] ?? 1, 1e-9)
        let stalled = (load["received"] ?? 0) < 1
        return Result(
            readingsPerSecond: stalled ? 0 : Double(readings) / seconds,
            cpuMicrosecondsPerReading: cpu / Double(max(1, stored)) * 1e6,
            stored: stored,
            stalled: stalled
        )
    }
}
