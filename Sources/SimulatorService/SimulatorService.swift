import FileFormats
import Foundation
import InputFiles
import Logging
import MQTT
import Rules
import ServiceLifecycle
import ServiceSupport
import Simulation
import Synchronization

/// `sensor-sim run`: publishes the simulated sensors' readings on their schedule (simulated time runs
/// `speed` times faster than the wall clock), applies commands to the simulated actuators and
/// publishes their state retained.
public final class SimulatorService: Service {
    /// The simulator's MQTT client; run it in the same service group, before this service.
    public let client: MQTTClient
    private let world: Mutex<Simulator>
    private let speed: Double
    private let wallStart: Int64
    private let qos: MQTTQoS
    private let duration: Duration?
    private let logger: Logger
    private let onReady: @Sendable () -> Void
    private let statusTopic: String
    private let published = Mutex(0)
    private let discovery: [HomeAssistantDiscovery.Config]

    public init(
        devices: [Device],
        mqtt: MQTTConfiguration,
        seed: UInt64,
        speed: Double,
        interval: Int64? = nil,
        qos: MQTTQoS = .atMostOnce,
        duration: Duration? = nil,
        homeAssistantDiscovery: Bool = false,
        logger: Logger,
        onReady: @escaping @Sendable () -> Void
    ) throws {
        var mqtt = mqtt
        let clientID = mqtt.clientID ?? "sensor-sim"
        mqtt.clientID = clientID
        statusTopic = "pipeline/sim/\(clientID)/status"
        mqtt.will = MQTTWill(topic: statusTopic, payload: Array("offline".utf8), qos: .atLeastOnce, retain: true)
        mqtt.receiveBufferCapacity = 100_000
        client = try MQTTClient(configuration: mqtt, logger: logger)
        wallStart = WallClock.nowMilliseconds()
        world = Mutex(Simulator(devices: devices, seed: seed, start: wallStart, interval: interval))
        self.speed = speed
        self.qos = qos
        self.duration = duration
        self.logger = logger
        self.onReady = onReady
        discovery =
            homeAssistantDiscovery
            ? HomeAssistantDiscovery.configs(for: devices, availabilityTopic: statusTopic) : []
    }

    /// Readings published so far.
    public var publishedCount: Int { published.withLock { $0 } }

    /// Simulated time now.
    private func simulatedNow() -> Int64 {
        wallStart + Int64(Double(WallClock.nowMilliseconds() - wallStart) * speed)
    }

    public func run() async throws {
        // The duration bounds the whole run, the wait for the broker included.
        let deadline = duration.map { ContinuousClock.now + $0 }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await BrokerConnectionReporter(client: self.client, logger: self.logger).run() }
            try await simulate(until: deadline)
            group.cancelAll()
        }
    }

    /// Thrown when the run's duration passes before the broker was reached.
    public struct BrokerNotReached: Error, CustomStringConvertible {
        public var description: String
    }

    private func simulate(until deadline: ContinuousClock.Instant?) async throws {
        do {
            // Given up at SIGTERM, or when the duration is over: a broker that is never reached must not hold up
            // the end of the run.
            try await cancelWhenGracefulShutdown { try await self.announce(before: deadline) }
        } catch is CancellationError {
            logger.notice("stopped before the simulation started")
            return
        }
        onReady()
        logger.info("simulating", metadata: ["devices": "\(world.withLock { $0.devices.count })", "speed": "\(speed)"])
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.applyCommands() }
            group.addTask { try await self.publishReadings() }
            if let deadline {
                try? await Task.sleep(until: deadline, clock: .continuous)
            } else {
                try? await gracefulShutdown()
            }
            group.cancelAll()
        }
        try? await withTimeout(.seconds(2), "publishing offline") {
            try await self.client.publish("offline", to: self.statusTopic, qos: .atLeastOnce, retain: true)
        }
    }

    /// `announce()`, failing with `BrokerNotReached` when `deadline` passes first.
    private func announce(before deadline: ContinuousClock.Instant?) async throws {
        guard let deadline, let duration else { return try await announce() }
        let announced = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await self.announce()
                return true
            }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return false
            }
            defer { group.cancelAll() }
            return try await group.next() ?? false
        }
        guard announced else {
            let milliseconds =
                duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
            throw BrokerNotReached(
                description: "the broker at \(client.configuration.broker) was not reached within --duration "
                    + "\(RuleDuration.format(milliseconds)) (\(client.lastConnectionProblem ?? "no answer"))"
            )
        }
    }

    /// Connects, subscribes to the actuators' commands and publishes their states, discovery and `online`.
    private func announce() async throws {
        try await client.waitUntilConnected()
        let filters = world.withLock { $0.commandFilters }
        if !filters.isEmpty { try await client.subscribe(to: filters, qos: .atLeastOnce) }
        for change in world.withLock({ $0.actuatorStates }) {
            try await client.publish(change.payload, to: change.topic, qos: .atLeastOnce, retain: true)
        }
        for config in discovery {
            try await client.publish(config.payload.jsonText, to: config.topic, qos: .atLeastOnce, retain: true)
        }
        try await client.publish("online", to: statusTopic, qos: .atLeastOnce, retain: true)
    }

    private func publishReadings() async throws {
        var readings: [SimulatedReading] = []
        var changes: [ActuatorStateChange] = []
        while !Task.isCancelled {
            let now = simulatedNow()
            world.withLock { $0.advance(to: now, readings: &readings, changes: &changes) }
            for (index, reading) in readings.enumerated() {
                // A simulator far behind makes long batches: stop within one when the run ends.
                if index % 1024 == 1023, Task.isCancelled { break }
                do {
                    try await client.publish(reading.payload, to: reading.topic, qos: qos)
                } catch let error as MQTTError where error.kind == .notConnected {
                    // QoS 0 while disconnected: this reading is gone; the sensor's `seq` shows the gap.
                }
            }
            published.withLock { $0 += readings.count }
            for change in changes { try await publishState(change) }
            readings.removeAll(keepingCapacity: true)
            changes.removeAll(keepingCapacity: true)
            let next = world.withLock { $0.nextDue } ?? (now + 1000)
            let wallWait = Double(next - simulatedNow()) / speed
            try await Task.sleep(for: .milliseconds(Int(min(50, max(1, wallWait)))))
        }
    }

    private func applyCommands() async throws {
        for await message in client.messages {
            let now = simulatedNow()
            guard let change = world.withLock({ $0.command(topic: message.topic, payload: message.payload, at: now) })
            else { continue }
            try await publishState(change)
        }
    }

    private func publishState(_ change: ActuatorStateChange) async throws {
        logger.info("actuator", metadata: ["topic": "\(change.topic)", "state": "\(change.state)"])
        try await client.publish(change.payload, to: change.topic, qos: .atLeastOnce, retain: true)
    }
}

/// `sensor-sim replay`: publishes recorded readings with their original spacing (divided by `speed`).
public enum RecordingPublisher {
    /// Reads JSON lines (as `rules-engine replay` reads them) or CSV `ts,topic,payload`.
    public static func readings(from text: String, path: String) throws -> [Reading] {
        guard path.hasSuffix(".csv") else { return try RecordedReadings.parse(text, path: path) }
        // One JSON line per CSV line (blank for the header and blank lines), so that errors name the CSV's lines.
        var lines: [String] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let fields = line.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
            let isHeader = number == 0 && fields.first?.trimmingCharacters(in: .whitespaces) == "ts"
            if isHeader || line.allSatisfy(\.isWhitespace) {
                lines.append("")
                continue
            }
            guard fields.count == 3 else {
                throw RuleFilesError("\(path):\(number + 1):1: error: expected ts,topic,payload")
            }
            let payload = String(fields[2]).trimmingCharacters(in: .whitespacesAndNewlines)
            let json = JSONValue(parsing: payload) ?? .string(payload)
            lines.append(
                JSONValue.object([
                    ("ts", Int64(fields[0]).map { .number(Double($0)) } ?? .string(String(fields[0]))),
                    ("topic", .string(String(fields[1]))), ("payload", json),
                ]).jsonText
            )
        }
        return try RecordedReadings.parse(lines.joined(separator: "\n"), path: path)
    }

    /// Publishes in order, keeping the recording's timing.
    public static func publish(_ readings: [Reading], with client: MQTTClient, speed: Double, qos: MQTTQoS) async throws
    {
        guard let first = readings.first else { return }
        let start = ContinuousClock.now
        for reading in readings {
            let offset = Double(reading.timestamp - first.timestamp) / speed
            try await Task.sleep(until: start + .milliseconds(Int64(offset)))
            try await client.publish(reading.payload, to: reading.topic, qos: qos)
        }
    }
}
