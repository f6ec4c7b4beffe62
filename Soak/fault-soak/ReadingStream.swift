import Foundation
import MQTT
import MQTTTestSupport
import Simulation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The readings the stream faults publish: `sensors` sensors round-robin, each reading carrying its
/// sensor's `seq` and one field per bit of it, `b<i>` = +seq when bit i of seq is set, -seq when not. One
/// rule per bit fires above 0. Any two readings of a sensor differ in some bit, so every reading the
/// engine evaluates makes at least one rule change state — whatever was lost before it — and writes an
/// audit line holding its `seq`: the audit trail is an exact record of which readings were evaluated,
/// and of any transition written twice.
struct ReadingStream {
    var readings: Int
    var sensors: Int
    var perSecond: Int
    var prefix: String

    /// The last `seq` of every sensor (`readings` is a multiple of `sensors`).
    var lastSequence: Int { readings / sensors }

    /// Bits needed for the largest `seq`: one rule each.
    var bits: Int { Int.bitWidth - lastSequence.leadingZeroBitCount }

    var rules: String {
        "rules:\n"
            + (0..<bits).map { bit in
                """
                  - id: soak-bit-\(bit)
                    topic: \(prefix)/{sensor}/value
                    field: b\(bit)
                    above: 0

                """
            }.joined()
    }

    func topic(sensor: Int) -> String { "\(prefix)/s\(sensor)/value" }

    func payload(sequence: Int) -> String {
        "{\"seq\":\(sequence)" + (0..<bits).map { ",\"b\($0)\":\(Self.value(sequence: sequence, bit: $0))" }.joined()
            + "}"
    }

    static func value(sequence: Int, bit: Int) -> Int { (sequence >> bit) & 1 == 1 ? sequence : -sequence }
}

/// Publishes a stream at QoS 1 from its own persistent session, paced, with at most `window` readings
/// not yet acknowledged (so a broker outage holds the sensors back instead of queueing without bound).
final class StreamPublisher: Sendable {
    let client: MQTTClient
    private let sent = Atomic<Int>(0)

    init(broker: BrokerURL, clientID: String) throws {
        var configuration = MQTTConfiguration(broker: broker, clientID: clientID)
        configuration.cleanSession = false
        configuration.fallsBackToV311 = true  // as every program does: RabbitMQ speaks 3.1.1 only
        client = try MQTTClient(configuration: configuration)
    }

    /// Readings handed to the client so far.
    var sentCount: Int { sent.load(ordering: .relaxed) }

    /// Publishes every reading of `stream`; returns once the broker acknowledged all of them.
    func publish(_ stream: ReadingStream, window: Int = 2_000) async throws {
        let clientTask = Task { try await client.run() }
        defer { clientTask.cancel() }
        try await client.waitUntilConnected()
        var receipts: [MQTTClient.PublishReceipt] = []
        receipts.reserveCapacity(stream.readings)
        var acknowledged = 0
        let start = ContinuousClock.now
        for index in 0..<stream.readings {
            if index % 100 == 0 {
                let due = start + .microseconds(Int64(index) * 1_000_000 / Int64(stream.perSecond))
                if due > .now { try await Task.sleep(until: due) }
            }
            if receipts.count - acknowledged >= window {
                try await client.acknowledgement(of: receipts[acknowledged])
                acknowledged += 1
            }
            let payload = stream.payload(sequence: index / stream.sensors + 1)
            receipts.append(
                try client.send(
                    Array(payload.utf8),
                    to: stream.topic(sensor: index % stream.sensors),
                    qos: .atLeastOnce
                )
            )
            sent.store(index + 1, ordering: .relaxed)
        }
        while acknowledged < receipts.count {
            try await client.acknowledgement(of: receipts[acknowledged])
            acknowledged += 1
        }
    }
}

/// `rules-engine run` as the stream faults run it: state directory, audit trail, HTTP, warnings only.
final class SoakEngine: Sendable {
    let arguments: [String]
    let auditPath: String
    let httpPort: Int
    private let current = Mutex<ChildProcess?>(nil)

    init(rules: String, broker: BrokerURL, clientID: String, extraArguments: [String] = []) throws {
        let rulesDirectory = try TestBroker.makeDirectory()
        try rules.write(toFile: rulesDirectory + "/soak.yaml", atomically: true, encoding: .utf8)
        let stateDirectory = try TestBroker.makeDirectory()
        auditPath = stateDirectory + "/audit.jsonl"
        httpPort = try TestBroker.freePort()
        arguments =
            [
                "run", "--rules", rulesDirectory, "--broker", broker.description, "--client-id", clientID,
                "--state-dir", stateDirectory + "/state", "--audit", auditPath, "--http", "127.0.0.1:\(httpPort)",
                "--log-level", "warning",
            ] + extraArguments
    }

    var process: ChildProcess? { current.withLock { $0 } }

    /// Starts the engine and waits for `ready`.
    func start() async throws {
        let process = try ChildProcess(builtProductPath("rules-engine"), arguments)
        current.withLock { $0 = process }
        try await process.waitForLine("ready", timeout: .seconds(60))
    }

    /// Bytes in the audit trail so far.
    var auditSize: Int {
        ((try? FileManager.default.attributesOfItem(atPath: auditPath)[.size]) as? Int) ?? 0
    }

    /// `kill -9`, and waits until it is gone.
    func kill() async {
        guard let process else { return }
        process.signal(SIGKILL)
        _ = await process.waitForExit()
    }

    /// SIGTERM; the exit status.
    func stop() async -> Int32 {
        guard let process else { return -1 }
        process.signal(SIGTERM)
        return await process.waitForExit()
    }

    /// Whether `/healthz` answers 200 (connected to the broker, rules loaded).
    func isHealthy() async -> Bool {
        (try? await get(httpPort, "/healthz").status) == 200
    }

    /// Whether every sensor's instance has seen the sensor's last reading.
    func hasSeenTheEnd(of stream: ReadingStream) async throws -> Bool {
        let body = try await get(httpPort, "/api/instances?rule=soak-bit-0").body
        guard let instances = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [[String: Any]],
            instances.count == stream.sensors
        else { return false }
        let last = Double(ReadingStream.value(sequence: stream.lastSequence, bit: 0))
        return instances.allSatisfy { ($0["last_value"] as? Double) == last }
    }
}

/// What the audit trail says about a stream: per reading and rule, how many transitions it holds.
struct AuditCount {
    /// Readings published but never evaluated (no audit line of any rule holds their `seq`).
    var lost = 0
    /// Transitions written more than once for one reading and rule.
    var duplicated = 0
    /// Lines that match no published reading (must stay 0).
    var unexpected = 0
    /// With nothing lost, every reading must change exactly the rules whose bit differs from the previous
    /// reading's: transitions missing or extra (an instance restored in the wrong state) count here.
    var wrongTransitions = 0

    init(auditPath: String, stream: ReadingStream) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: auditPath))
        var counts = [UInt8](repeating: 0, count: stream.readings * stream.bits)
        let ruleKey = Array("\"rule\":\"soak-bit-".utf8)
        let sensorKey = Array("\"sensor\":\"s".utf8)
        let readingKey = Array("\"reading\":{".utf8)
        let valueKey = Array("\"value\":".utf8)
        data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
            let bytes = buffer.bindMemory(to: UInt8.self)
            var lineStart = 0
            while lineStart < bytes.count {
                var lineEnd = lineStart
                while lineEnd < bytes.count, bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
                let line = UnsafeBufferPointer(rebasing: bytes[lineStart..<lineEnd])
                if let bit = Self.integer(after: ruleKey, in: line, from: 0),
                    let sensor = Self.integer(after: sensorKey, in: line, from: 0),
                    let readingAt = Self.find(readingKey, in: line, from: 0),
                    let value = Self.integer(after: valueKey, in: line, from: readingAt),
                    (0..<stream.bits).contains(bit), (0..<stream.sensors).contains(sensor),
                    (1...stream.lastSequence).contains(abs(value))
                {
                    counts[((abs(value) - 1) * stream.sensors + sensor) * stream.bits + bit] &+= 1
                } else if lineEnd > lineStart {
                    unexpected += 1
                }
                lineStart = lineEnd + 1
            }
        }
        for reading in 0..<stream.readings {
            let perRule = counts[(reading * stream.bits)..<((reading + 1) * stream.bits)]
            if perRule.allSatisfy({ $0 == 0 }) { lost += 1 }
            duplicated += perRule.reduce(0) { $0 + max(0, Int($1) - 1) }
            let sequence = reading / stream.sensors + 1
            for bit in 0..<stream.bits {
                // From inactive, the first reading fires the rules of its set bits.
                let previous = sequence == 1 ? 0 : ((sequence - 1) >> bit) & 1
                let expected = (sequence >> bit) & 1 != previous
                if (counts[reading * stream.bits + bit] > 0) != expected { wrongTransitions += 1 }
            }
        }
        if lost > 0 { wrongTransitions = 0 }  // after a gap the next reading's transitions differ by design
    }

    private static func find(_ key: [UInt8], in line: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        guard line.count >= key.count, start <= line.count - key.count else { return nil }
        for position in start...(line.count - key.count) where line[position] == key[0] {
            if (0..<key.count).allSatisfy({ line[position + $0] == key[$0] }) { return position + key.count }
        }
        return nil
    }

    private static func integer(after key: [UInt8], in line: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        guard var position = find(key, in: line, from: start) else { return nil }
        var negative = false
        if position < line.count, line[position] == UInt8(ascii: "-") {
            negative = true
            position += 1
        }
        var value = 0
        var digits = 0
        while position < line.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(line[position]) {
            value = value * 10 + Int(line[position] - UInt8(ascii: "0"))
            position += 1
            digits += 1
        }
        return digits == 0 ? nil : (negative ? -value : value)
    }
}

/// The faults injected while a stream runs.
enum StreamFault: String, CaseIterable {
    case engineKill = "engine kill -9"
    case brokerStop = "broker SIGTERM + restart"
    case brokerKill = "broker kill -9 + restart"
    case networkCut = "silent network cut"
}

/// The broker settings of `config/mosquitto/production.conf` that matter to loss: persistence with a
/// periodic autosave (so a `kill -9` loses what arrived since), no per-client message count limit.
func persistentBrokerConfiguration(directory: String) -> String {
    """
    persistence true
    persistence_location \(directory)/
    autosave_interval 60
    max_queued_bytes 1073741824
    \(ProcessInfo.processInfo.environment["SOAK_DEBUG"] != nil ? "log_type debug" : "")
    """
}

/// A broker the stream rows run through: mosquitto, or RabbitMQ with its MQTT plugin.
protocol SoakBroker: Sendable {
    var url: BrokerURL { get }
    var log: String { get }
    func start() async throws
    func stop()
    func kill()
}

extension TestBroker: SoakBroker {}
extension TestRabbitMQ: SoakBroker {}

/// Which broker a stream row runs through.
enum SoakBrokerKind: String {
    case mosquitto
    case rabbitMQ = "RabbitMQ"

    func start() async throws -> any SoakBroker {
        switch self {
        case .mosquitto:
            let directory = try TestBroker.makeDirectory()
            return try await TestBroker(
                extraConfiguration: persistentBrokerConfiguration(directory: directory),
                directory: directory
            )
        case .rabbitMQ:
            return try await TestRabbitMQ()
        }
    }
}

/// Runs `stream` through a broker and the engine and injects `fault` `count` times, evenly over the stream.
func runStream(
    _ fault: StreamFault,
    count: Int,
    stream: ReadingStream,
    seed: UInt64,
    keepalive: Int = 30,
    broker kind: SoakBrokerKind = .mosquitto
) async throws -> FaultRow {
    let broker = try await kind.start()
    let proxy = fault == .networkCut ? try FaultProxy(upstreamPort: broker.url.port) : nil
    defer { proxy?.stop() }
    let engine = try SoakEngine(
        rules: stream.rules,
        broker: proxy.map { BrokerURL(host: "127.0.0.1", port: $0.port) } ?? broker.url,
        clientID: "soak-engine-\(stream.prefix)",
        extraArguments: ["--keepalive", String(keepalive)]
    )
    try await engine.start()
    let publisher = try StreamPublisher(broker: broker.url, clientID: "soak-sensors-\(stream.prefix)")
    let publishing = Task { try await publisher.publish(stream) }

    var random = SplitMix64(seed: seed)
    var recoveries: [Double] = []
    var detections: [Double] = []
    var readyTimes: [Double] = []
    var silences: [Double] = []
    for index in 0..<count {
        let due = (index + 1) * stream.readings / (count + 1)
        try await waitUntil("the publisher reaching reading \(due)", limit: .seconds(600)) {
            publisher.sentCount >= due
        }
        switch fault {
        case .engineKill:
            let killed = ContinuousClock.now
            await engine.kill()
            let size = engine.auditSize
            let restart = Task { try await engine.start() }
            // Recovered when the new process evaluates readings again (its first audit line); `ready` comes
            // later when the broker sends the session's backlog ahead of the SUBACK.
            try await waitUntil("the restarted engine evaluating", limit: .seconds(120)) { engine.auditSize > size }
            recoveries.append((ContinuousClock.now - killed).milliseconds)
            try await restart.value
            readyTimes.append((ContinuousClock.now - killed).milliseconds)
        case .brokerStop, .brokerKill:
            if fault == .brokerStop { broker.stop() } else { broker.kill() }
            try await waitUntil("the engine noticing the broker is gone", limit: .seconds(30)) {
                await !engine.isHealthy()
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 100...1_000, using: &random)))  // the outage
            try await broker.start()
            let back = try await waitUntil("the engine reconnecting", limit: .seconds(120)) { await engine.isHealthy() }
            recoveries.append(back.milliseconds)
        case .networkCut:
            proxy?.cut()
            // The engine goes on reading what was already in its socket when the cut came (the broker keeps
            // many QoS 1 messages in flight); keepalive counts silence from the last of it.
            var received = -1.0
            var lastReceivedAt = ContinuousClock.now
            let detected = try await waitUntil("the engine noticing the cut", limit: .seconds(Int64(keepalive) * 6)) {
                let now = (try? await metrics(engine.httpPort))?["sensor_pipeline_readings_received_total"] ?? received
                if now != received {
                    received = now
                    lastReceivedAt = .now
                }
                return await !engine.isHealthy()
            }
            detections.append(detected.milliseconds)
            silences.append((ContinuousClock.now - lastReceivedAt).milliseconds)
            proxy?.heal()
            let back = try await waitUntil("the engine reconnecting", limit: .seconds(120)) { await engine.isHealthy() }
            recoveries.append(back.milliseconds)
        }
    }
    try await publishing.value
    try await waitUntil("the engine evaluating the last readings", limit: .seconds(600)) {
        try await engine.hasSeenTheEnd(of: stream)
    }
    let counters = try await metrics(engine.httpPort)
    if ProcessInfo.processInfo.environment["SOAK_DEBUG"] != nil {
        emit(engine.process?.standardError ?? "")
        try broker.log.write(toFile: "/tmp/soak-broker.log", atomically: true, encoding: .utf8)
    }
    let exitStatus = await engine.stop()
    broker.stop()
    let audit = try AuditCount(auditPath: engine.auditPath, stream: stream)
    let reportedLost = Int(counters["sensor_pipeline_readings_lost_total"] ?? 0)
    let reportedDuplicates = Int(counters["sensor_pipeline_readings_duplicate_total"] ?? 0)

    var detail = "\(stream.readings) readings at QoS 1; "
    var passed = audit.duplicated == 0 && audit.unexpected == 0 && audit.wrongTransitions == 0 && exitStatus == 0
    switch fault {
    case .engineKill:
        detail +=
            "restarted at once; recovered-in = kill to evaluating again, kill to ready \(FaultRow.summary(readyTimes))"
        passed = passed && audit.lost == 0
    case .brokerStop:
        detail += "engine reported \(reportedLost) lost, dropped \(reportedDuplicates) redelivered"
        passed = passed && audit.lost == 0 && reportedLost == 0
    case .brokerKill:
        detail +=
            "engine reported \(reportedLost) lost (actual \(audit.lost)), dropped \(reportedDuplicates) redelivered; recovered-in = broker up to engine connected (cap 31 s)"
        passed = passed && reportedLost == audit.lost && (recoveries.max() ?? 0) <= 31_000
    case .networkCut:
        detail +=
            "keepalive \(keepalive) s; cut detected \(FaultRow.summary(detections)) after the cut, \(FaultRow.summary(silences)) after the last reading received (limit 2 x keepalive + libmosquitto's 1 s loop tick + 1 s for a loaded machine: \(2 * keepalive + 2) s); engine reported \(reportedLost) lost, dropped \(reportedDuplicates) redelivered"
        // libmosquitto sends PINGREQ after `keepalive` without traffic and gives up after another
        // `keepalive` without PINGRESP, checked on its network loop's 1 s tick; the short mode runs in CI
        // on busy machines, hence one more second before this fails.
        passed = passed && audit.lost == 0 && (silences.max() ?? 0) <= Double(2_000 * keepalive + 2_000)
    }
    if audit.unexpected > 0 { detail += "; \(audit.unexpected) unexpected audit lines" }
    if audit.lost == 0 { detail += "; \(audit.wrongTransitions) transitions missing or extra" }
    if exitStatus != 0 { detail += "; engine exit \(exitStatus) on SIGTERM" }
    return FaultRow(
        fault: kind == .mosquitto ? fault.rawValue : "\(fault.rawValue) (\(kind.rawValue))",
        injected: count,
        lost: audit.lost,
        duplicated: audit.duplicated,
        recoveries: recoveries,
        detail: detail,
        passed: passed
    )
}
