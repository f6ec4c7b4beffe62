import Foundation
import Logging
import MQTT
import MQTTTestSupport
import NATS
import NATSTestSupport
import PartitionLeases

/// Scenario 10: `rules-engine run --nats` with 1, 2 and 3 engines on this machine, over one backlog: readings
/// already in the stream (one nats-server, R1, 16 partitions), every sensor's last reading hot. The engines
/// start together, share the partitions by lease, evaluate everything and record one `fire` per sensor; the
/// figure is readings over the time from their launch to the last of those records.
enum ScaleOutEngines {
    struct Result {
        var readingsPerSecond: Double
        /// Engines' CPU (all of them) per reading, in microseconds.
        var engineMicrosecondsPerReading: Double
        /// nats-server's CPU per reading while the engines read, in microseconds.
        var serverMicrosecondsPerReading: Double
    }

    static let partitions = 16
    static let rules = """
        rules:
          - id: hot
            topic: sensors/{sensor}/temperature
            above: 30
            clear: 28

        """

    static func run(engines count: Int, sensors: Int, readingsPerSensor: Int, broker: TestBroker) async throws -> Result
    {
        let mapping = DevicePartitioning(partitions: partitions).subjectMapping
        let nats = try await TestNATSServer(
            extraConfiguration: "mappings = { \"\(mapping.source)\": \"\(mapping.destination)\" }"
        )
        do {
            let result = try await measure(
                nats,
                engines: count,
                sensors: sensors,
                readingsPerSensor: readingsPerSensor,
                broker: broker
            )
            await nats.stop()
            return result
        } catch {
            await nats.stop()
            throw error
        }
    }

    private static func measure(
        _ nats: TestNATSServer,
        engines count: Int,
        sensors: Int,
        readingsPerSensor: Int,
        broker: TestBroker
    ) async throws -> Result {
        let connection = try await NATSConnection.connect(
            NATSConfiguration(servers: [nats.url], name: "pipeline-bench-engines"),
            logger: Logger(label: "pipeline-bench")
        )
        defer { connection.close() }
        try await connection.createStream(
            named: PartitionSubjects.readingsStream,
            subjects: [PartitionSubjects.allReadings]
        )
        try await connection.createStream(
            named: PartitionSubjects.decisionsStream,
            subjects: [PartitionSubjects.allDecisions]
        )
        let total = sensors * readingsPerSensor
        for round in 0..<readingsPerSensor {
            for sensor in 0..<sensors {
                let value = round == readingsPerSensor - 1 ? 35 : 20
                try connection.publish(
                    Array(#"{"value":\#(value),"seq":\#(round + 1)}"#.utf8),
                    to: "sensors.s\(sensor).temperature"
                )
            }
            if round % 10 == 9 { try await connection.flush() }
        }
        try await connection.flush()
        for _ in 0..<600
        where try await connection.messageCount(inStream: PartitionSubjects.readingsStream) < UInt64(total) {
            try await Task.sleep(for: .milliseconds(50))
        }
        guard try await connection.messageCount(inStream: PartitionSubjects.readingsStream) >= UInt64(total) else {
            throw BenchError("the stream did not store the \(total) readings")
        }

        let rulesDirectory = try TestBroker.makeDirectory()
        try rules.write(toFile: rulesDirectory + "/rules.yaml", atomically: true, encoding: .utf8)
        let serverBefore = cpuSeconds(nats.processID ?? 0)
        let started = ContinuousClock.now
        let engines = try (0..<count).map { index in
            try ChildProcess(
                builtProductPath("rules-engine"),
                [
                    "run", "--rules", rulesDirectory, "--nats", nats.url, "--partitions", "\(partitions)",
                    "--engine-id", "bench-\(index)", "--broker", broker.url.description, "--log-level", "warning",
                    "--lease-ttl", "3s",
                ]
            )
        }
        defer { for engine in engines { engine.signal(SIGKILL) } }
        // Done when every sensor's hot reading is recorded as a decision.
        var fired = 0
        let deadline = ContinuousClock.now + .seconds(300)
        while fired < sensors {
            guard ContinuousClock.now < deadline else { throw BenchError("\(fired) of \(sensors) fires in 300 s") }
            try await Task.sleep(for: .milliseconds(20))
            fired = try await firesRecorded(connection)
        }
        let elapsed = seconds(ContinuousClock.now - started)
        let engineCPU = engines.map { cpuSeconds($0.pid) }.reduce(0, +)
        let serverCPU = cpuSeconds(nats.processID ?? 0) - serverBefore
        for engine in engines { engine.signal(SIGTERM) }
        for engine in engines { _ = await engine.waitForExit(killingAfter: .seconds(10)) }
        return Result(
            readingsPerSecond: Double(total) / elapsed,
            engineMicrosecondsPerReading: engineCPU / Double(total) * 1e6,
            serverMicrosecondsPerReading: serverCPU / Double(total) * 1e6
        )
    }

    /// Decision records holding a `fire`.
    private static func firesRecorded(_ connection: NATSConnection) async throws -> Int {
        guard try await connection.messageCount(inStream: PartitionSubjects.decisionsStream) > 0 else { return 0 }
        var fires = 0
        for await message in try connection.readStream(
            PartitionSubjects.decisionsStream,
            filter: PartitionSubjects.allDecisions
        ) {
            if message.payload.count > 100, String(decoding: message.payload, as: UTF8.self).contains(#""fire""#) {
                fires += 1
            }
            if message.pendingAfter == 0 { break }
        }
        return fires
    }
}
