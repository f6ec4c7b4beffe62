import Foundation
import Logging
import MQTT
import MQTTTestSupport
import NATS
import NATSTestSupport
import PartitionLeases
import PartitionState
import Rules
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The scale-out row (docs/scale-out.md): 3 `nats-server` nodes (streams and buckets at 3 replicas), 3
/// `rules-engine run --nats` engines, acknowledged readings with `seq` from `sensors` sensors through the
/// partition mapping, while engines and nodes are killed with -9.
///
/// The accounting is exact because the engines decide in the stream's time: the soak reads the whole
/// readings stream afterwards, evaluates each partition with the pure `Evaluator` up to where its last
/// owner stopped, and compares those transitions with the decisions stream (missing, repeated,
/// unexpected). Overlapping owners are records of an older epoch after a newer one on a partition.
struct ScaleOutSoak {
    var sensors: Int
    var rounds: Int
    /// Each sensor publishes once per round.
    var round: Duration
    var engineKills: Int
    var nodeKills: Int
    var leaseTTL: Duration = .seconds(3)

    static let partitions = 16
    static let engines = 3
    static let rules = """
        rules:
          - id: hot
            topic: sensors/{sensor}/temperature
            above: 30
            clear: 28
          - id: sustained
            topic: sensors/{sensor}/temperature
            above: 30
            clear: 28
            for: 3s
          - id: warm-on-average
            topic: sensors/{sensor}/temperature
            avg: 10s
            above: 27
            clear: 26

        """

    /// Sensors alternate between 20 and 35 every 4 readings, staggered so that transitions are spread out; the
    /// average of the last 10 s (5 readings) crosses 27 and 26 with them.
    static func value(sensor: Int, round: Int) -> Int { (round + sensor) / 4 % 2 == 0 ? 20 : 35 }

    func run() async throws -> FaultRow {
        let ports = try TestNATSServer.clusterPorts(3)
        let mapping = DevicePartitioning(partitions: Self.partitions).subjectMapping
        var nodes: [TestNATSServer] = []
        for index in 0..<3 {
            nodes.append(
                try await TestNATSServer(
                    cluster: (ports, index),
                    extraConfiguration: "mappings = { \"\(mapping.source)\": \"\(mapping.destination)\" }"
                )
            )
        }
        let broker = try await TestBroker()  // the edge mosquitto the commands would go down through
        do {
            for node in nodes { try await node.waitUntilReady() }
            let row = try await measure(nodes: nodes, broker: broker)
            for node in nodes { await node.stop() }
            broker.stop()
            return row
        } catch {
            for node in nodes { await node.kill() }
            broker.stop()
            throw error
        }
    }

    private func measure(nodes: [TestNATSServer], broker: TestBroker) async throws -> FaultRow {
        let rulesDirectory = try TestBroker.makeDirectory()
        try Self.rules.write(toFile: rulesDirectory + "/rules.yaml", atomically: true, encoding: .utf8)
        let servers = nodes.map(\.url)
        let connection = try await NATSConnection.connect(
            NATSConfiguration(servers: servers, name: "soak-scale-out", requestTimeout: .seconds(10)),
            logger: Logger(label: "soak")
        )
        defer { connection.close() }
        try await waitUntil("the cluster makes the streams", limit: .seconds(90)) {
            do {
                try await connection.createStream(
                    named: PartitionSubjects.readingsStream,
                    subjects: [PartitionSubjects.allReadings],
                    replicas: 3
                )
                try await connection.createStream(
                    named: PartitionSubjects.decisionsStream,
                    subjects: [PartitionSubjects.allDecisions],
                    replicas: 3
                )
                return true
            } catch { return false }
        }
        let engines = (0..<Self.engines).map { index in
            ScaleOutEngine(
                id: "e\(index)",
                arguments: [
                    "run", "--rules", rulesDirectory, "--broker", broker.url.description, "--nats",
                    servers.joined(separator: ","), "--partitions", "\(Self.partitions)", "--engine-id", "e\(index)",
                    "--replicas", "3", "--lease-ttl", "\(leaseTTL.components.seconds)s", "--snapshot-interval", "2s",
                ]
            )
        }
        defer { for engine in engines { engine.kill() } }
        for engine in engines { try await engine.start() }
        let leases = try await Self.retrying {
            try await connection.keyValue(bucket: "sensor-pipeline-leases", ttl: self.leaseTTL, replicas: 3)
        }
        try await waitUntil("every engine holds partitions", limit: .seconds(90)) {
            Set((try? await Self.owners(leases))?.values ?? [:].values).count == Self.engines
        }

        let tally = ScaleOutTally()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.publish(connection, tally: tally) }
            group.addTask { try await self.injectFaults(engines: engines, nodes: nodes, leases: leases, tally: tally) }
            try await group.waitForAll()
        }

        // Caught up: every partition's snapshot is past its last reading; then every engine stops (SIGTERM).
        let stream = try await Self.retrying {
            try await Self.read(connection, PartitionSubjects.readingsStream, filter: PartitionSubjects.allReadings)
        }
        var lastReading: [Int: UInt64] = [:]
        for message in stream where !message.subject.hasSuffix(".tick") {
            if let (partition, _) = DevicePartitioning.topic(ofSubject: message.subject) {
                lastReading[partition] = message.streamSequence
            }
        }
        let snapshots = try await PartitionSnapshotStore(connection: connection, replicas: 3)
        func lagging() async -> [String] {
            var result: [String] = []
            for (partition, sequence) in lastReading.sorted(by: { $0.key < $1.key }) {
                let saved = try? await snapshots.load(partition: partition)
                let position = saved?.snapshot.lastSequence ?? 0
                if position < sequence {
                    result.append(
                        "partition \(partition) at \(position) (epoch \(saved?.snapshot.epoch ?? 0)), last reading \(sequence)"
                    )
                }
            }
            return result
        }
        do {
            try await waitUntil("the engines catch up", limit: .seconds(180)) { await lagging().isEmpty }
        } catch {
            throw SoakError("the engines did not catch up: \(await lagging().joined(separator: "; "))")
        }
        for engine in engines { await engine.stop() }

        // What the engines should have decided, partition by partition, and what they recorded.
        let records = try await Self.retrying {
            try await Self.read(connection, PartitionSubjects.decisionsStream, filter: PartitionSubjects.allDecisions)
        }
        var recordedThrough: [Int: UInt64] = [:]
        var recorded: [String] = []
        var sustainedFires: [(due: Int64, late: Double, partition: Int)] = []
        var overlaps = 0
        var newestEpoch: [Int: UInt64] = [:]
        for message in records {
            guard let record = try JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any],
                let partition = record["partition"] as? Int, let epoch = (record["epoch"] as? NSNumber)?.uint64Value,
                let sequence = (record["sequence"] as? NSNumber)?.uint64Value
            else { throw SoakError("a decision record that does not parse") }
            if epoch < newestEpoch[partition, default: 0] { overlaps += 1 }
            newestEpoch[partition] = max(epoch, newestEpoch[partition, default: 0])
            recordedThrough[partition] = max(sequence, recordedThrough[partition, default: 0])
            for case let decision as [String: Any] in record["decisions"] as? [Any] ?? []
            where decision["event"] as? String == "transition" {
                let labels = decision["labels"] as? [String: Any] ?? [:]
                let timestamp = (decision["ts"] as? NSNumber)?.int64Value ?? 0
                recorded.append(
                    Self.key(
                        rule: decision["rule"] as? String ?? "?",
                        sensor: labels["sensor"] as? String ?? "?",
                        transition: decision["transition"] as? String ?? "?",
                        timestamp: timestamp
                    )
                )
                if decision["rule"] as? String == "sustained", decision["transition"] as? String == "fire" {
                    sustainedFires.append(
                        (timestamp, Double(message.storedAtNanoseconds / 1_000_000 - timestamp), partition)
                    )
                }
            }
        }
        var positions: [Int: UInt64] = [:]
        for partition in 0..<Self.partitions {
            let saved =
                try await Self.retrying { try await snapshots.load(partition: partition) }?.snapshot.lastSequence ?? 0
            positions[partition] = max(saved, recordedThrough[partition, default: 0])
        }
        // The whole stream now that every engine has stopped (their ticks went on after the first read).
        let final = try await Self.retrying {
            try await Self.read(connection, PartitionSubjects.readingsStream, filter: PartitionSubjects.allReadings)
        }
        let expected = try Self.expectedTransitions(final, through: positions)
        let recordedSet = Set(recorded)
        let missing = expected.subtracting(recordedSet).count
        let unexpected = recordedSet.subtracting(expected).count
        let repeated = recorded.count - recordedSet.count

        // Readings: every acknowledged one is in the stream (a retried one may be there twice).
        var stored = Set<String>()
        var storedTwice = 0
        for message in stream where !message.subject.hasSuffix(".tick") {
            let key = message.subject + String(decoding: message.payload, as: UTF8.self)
            if !stored.insert(key).inserted { storedTwice += 1 }
        }
        let counts = tally.published.withLock { $0 }
        let lost = sensors * rounds - stored.count
        // A `for` whose time came while an engine was dead fires at the new owner: how late.
        let windows = tally.outages.withLock { $0 }
        let lateAtKills = sustainedFires.filter { fire in
            windows.contains { $0.start <= fire.due && fire.due <= $0.end }
        }
        .map(\.late)
        let takeoverTimes = tally.takeovers.withLock { $0 }
        let maximumTakeover = takeoverTimes.max() ?? 0
        let passed =
            lost == 0 && missing == 0 && repeated == 0 && unexpected == 0 && overlaps == 0
            && maximumTakeover <= leaseTTL.milliseconds + 5_000
            && (lateAtKills.max() ?? 0) <= leaseTTL.milliseconds + 5_000
        // A failing row: the latest fires next to the faults (Unix ms), for whoever reads it.
        if !passed {
            for key in recordedSet.subtracting(expected).sorted().prefix(8) {
                FileHandle.standardError.write(Data("unexpected: \(key)\n".utf8))
            }
            if let first = recordedSet.subtracting(expected).sorted().first {
                let sensor = " " + first.split(separator: " ")[1] + " "
                FileHandle.standardError.write(
                    Data(
                        ("expected for\(sensor): \(expected.filter { $0.contains(sensor) }.sorted())\n"
                            + "recorded for\(sensor): \(recorded.filter { $0.contains(sensor) }.sorted())\n").utf8
                    )
                )
                let partition = DevicePartitioning(partitions: Self.partitions).partition(
                    ofDevice: String(sensor.dropFirst().dropLast())
                )
                FileHandle.standardError.write(
                    Data(
                        ("partition \(partition): evaluated through \(positions[partition] ?? 0), recorded through "
                            + "\(recordedThrough[partition] ?? 0), stream ends at \(final.last?.streamSequence ?? 0)\n")
                            .utf8
                    )
                )
            }
            for key in expected.subtracting(recordedSet).sorted().prefix(8) {
                FileHandle.standardError.write(Data("missing: \(key)\n".utf8))
            }
            for fire in sustainedFires.sorted(by: { $0.late > $1.late }).prefix(3) {
                FileHandle.standardError.write(
                    Data("late `for`: partition \(fire.partition), due \(fire.due), \(Int(fire.late)) ms late\n".utf8)
                )
            }
            for (kind, at) in tally.faults.withLock({ $0 }) {
                FileHandle.standardError.write(Data("fault: \(kind) at \(at)\n".utf8))
            }
        }
        return FaultRow(
            fault: "scale-out: engine kill -9, node kill -9",
            injected: engineKills + nodeKills,
            lost: lost,
            duplicated: repeated,
            recoveries: takeoverTimes,
            detail:
                "\(expected.count) transitions expected: \(missing) missing, \(unexpected) unexpected; \(overlaps) "
                + "overlapping owners; \(counts.acknowledged) readings acknowledged (\(counts.retries) retried, "
                + "\(storedTwice) stored twice); `for` due during a takeover: \(lateAtKills.count), fired late p50/max "
                + "\(FaultRow.summary(lateAtKills)), all `for`: \(FaultRow.summary(sustainedFires.map(\.late))); "
                + "takeover = kill to the last of its partitions live elsewhere",
            passed: passed
        )
    }

    // MARK: Readings

    /// Publishes `rounds` rounds, each sensor once per round, as JetStream publishes on
    /// `sensors.s<N>.temperature` (the mapping partitions them), each retried until the stream acknowledges it.
    private func publish(_ connection: NATSConnection, tally: ScaleOutTally) async throws {
        let clock = ContinuousClock()
        let start = clock.now
        for round in 0..<rounds {
            try await withThrowingDiscardingTaskGroup { group in
                for worker in 0..<32 {
                    group.addTask {
                        for sensor in stride(from: worker, to: sensors, by: 32) {
                            let payload = Array(
                                #"{"value": \#(Self.value(sensor: sensor, round: round)), "seq": \#(round + 1)}"#.utf8
                            )
                            while true {
                                do {
                                    try await connection.publishToStream(
                                        payload,
                                        subject: "sensors.s\(sensor).temperature"
                                    )
                                    tally.published.withLock { $0.acknowledged += 1 }
                                    break
                                } catch {
                                    tally.published.withLock { $0.retries += 1 }
                                    try await Task.sleep(for: .milliseconds(200))
                                }
                            }
                        }
                    }
                }
            }
            try await clock.sleep(until: start.advanced(by: self.round * (round + 1)))
        }
    }

    // MARK: Faults

    /// Spreads the kills over the publishing time, engines and nodes in turn.
    private func injectFaults(
        engines: [ScaleOutEngine],
        nodes: [TestNATSServer],
        leases: NATSKeyValue,
        tally: ScaleOutTally
    ) async throws {
        let faults = engineKills + nodeKills
        guard faults > 0 else { return }
        let publishing = round * rounds
        let gap = publishing * 0.8 / faults
        var engineFaults = 0
        var nodeFaults = 0
        for fault in 0..<faults {
            try await Task.sleep(for: fault == 0 ? publishing * 0.1 : gap)
            // Interleaved: a node kill after every (engineKills / nodeKills) engine kills.
            let killNode =
                nodeFaults < nodeKills
                && (engineFaults >= engineKills || fault % max(1, faults / max(1, nodeKills)) == 1)
            if killNode {
                let node = nodes[nodeFaults % nodes.count]
                nodeFaults += 1
                tally.faults.withLock { $0.append(("node \(node.clientPort) killed", Self.unixMilliseconds())) }
                await node.kill()
                try await Task.sleep(for: .seconds(2))
                try await node.start(waitingForReady: true)
                continue
            }
            let victim = engines[engineFaults % engines.count]
            engineFaults += 1
            let owned = try await Self.retrying { try await Self.owners(leases) }.filter { $0.value == victim.id }.map(
                \.key
            )
            let survivors = engines.filter { $0.id != victim.id }
            let seen = survivors.map { $0.liveLines().count }
            let killed = ContinuousClock.now
            let killedAt = Self.unixMilliseconds()
            tally.faults.withLock { $0.append(("engine \(victim.id) killed", killedAt)) }
            victim.kill()
            try await waitUntil("partitions of \(victim.id) taken over", limit: .seconds(60)) {
                var live = Set<Int>()
                for (engine, count) in zip(survivors, seen) {
                    for line in engine.liveLines().dropFirst(count) { live.insert(line) }
                }
                return Set(owned).isSubset(of: live)
            }
            tally.takeovers.withLock { $0.append((ContinuousClock.now - killed).milliseconds) }
            tally.outages.withLock { $0.append((killedAt, Self.unixMilliseconds())) }
            try await victim.start()
        }
    }

    // MARK: Reading the cluster

    /// A read of the cluster, tried again while a node is down or a leader is being elected (up to a minute).
    static func retrying<T>(_ read: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await read()
            } catch {
                attempt += 1
                guard attempt < 30 else { throw error }
                try await Task.sleep(for: .seconds(2))
            }
        }
    }

    static func unixMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func owners(_ leases: NATSKeyValue) async throws -> [Int: String] {
        var owners: [Int: String] = [:]
        for partition in 0..<partitions {
            if let entry = try await leases.get(PartitionLeaseConfiguration.leaseKey(partition)) {
                owners[partition] = String(decoding: entry.value, as: UTF8.self)
            }
        }
        return owners
    }

    /// A whole stream (through its last message now).
    static func read(_ connection: NATSConnection, _ stream: String, filter: String) async throws -> [NATSStreamMessage]
    {
        guard try await connection.messageCount(inStream: stream) > 0 else { return [] }
        var messages: [NATSStreamMessage] = []
        for await message in try connection.readStream(stream, filter: filter) {
            messages.append(message)
            if message.pendingAfter == 0 { break }
        }
        return messages
    }

    static func key(rule: String, sensor: String, transition: String, timestamp: Int64) -> String {
        "\(rule) \(sensor) \(transition) \(timestamp)"
    }

    /// Each partition's messages through `positions[partition]`, evaluated as an engine does: at the stream's
    /// time, ticks as the clock.
    static func expectedTransitions(
        _ stream: [NATSStreamMessage],
        through positions: [Int: UInt64]
    ) throws -> Set<String> {
        let ruleSet = try RuleLoader.load([RuleSource(path: "soak.yaml", text: rules)])
        var evaluators: [Int: Evaluator] = [:]
        var result = Set<String>()
        for message in stream {
            let partition = Int(message.subject.split(separator: ".")[1]) ?? -1
            guard message.streamSequence <= positions[partition, default: 0] else { continue }
            var evaluator = evaluators[partition] ?? Evaluator(ruleSet: ruleSet)
            var events: [EvaluationEvent] = []
            let time = message.storedAtNanoseconds / 1_000_000
            if !message.subject.hasSuffix(".tick"),
                let (_, topic) = DevicePartitioning.topic(ofSubject: message.subject)
            {
                evaluator.process(Reading(topic: topic, payload: message.payload, timestamp: time), into: &events)
            } else {
                evaluator.advance(to: time, into: &events)  // a tick: the partition's clock, as the engine runs it
            }
            evaluators[partition] = evaluator
            for case .transition(let record) in events {
                result.insert(
                    key(
                        rule: record.ruleID,
                        sensor: record.labels.first?.value ?? "?",
                        transition: record.transition.rawValue,
                        timestamp: record.timestamp
                    )
                )
            }
        }
        return result
    }
}

/// What the publisher and the fault injector count while they run.
final class ScaleOutTally: Sendable {
    let published = Mutex<(acknowledged: Int, retries: Int)>((0, 0))
    /// Kill to the last of the victim's partitions live elsewhere, in milliseconds.
    let takeovers = Mutex<[Double]>([])
    /// From each engine kill to its takeover's end, in Unix milliseconds.
    let outages = Mutex<[(start: Int64, end: Int64)]>([])
    /// Every fault, with its Unix millisecond.
    let faults = Mutex<[(kind: String, at: Int64)]>([])
}

/// One engine of the soak, which can be killed and started again under the same id.
final class ScaleOutEngine: Sendable {
    let id: String
    private let arguments: [String]
    private let current = Mutex<ChildProcess?>(nil)
    /// "partition live" lines of earlier processes under this id.
    private let earlier = Mutex<[Int]>([])

    init(id: String, arguments: [String]) {
        self.id = id
        self.arguments = arguments
    }

    func start() async throws {
        let process = try ChildProcess(builtProductPath("rules-engine"), arguments)
        current.withLock { $0 = process }
        try await process.waitForLine("ready", timeout: .seconds(60))
    }

    /// The partitions this id announced live, in order, over all its processes.
    func liveLines() -> [Int] {
        let text = current.withLock { $0 }?.standardError ?? ""
        return earlier.withLock { $0 } + Self.liveLines(in: text)
    }

    static func liveLines(in text: String) -> [Int] {
        text.split(separator: "\n").compactMap { line -> Int? in
            guard line.hasSuffix("partition live"), let range = line.range(of: " partition=") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
    }

    func kill() {
        let process = current.withLock { process -> ChildProcess? in
            defer { process = nil }
            return process
        }
        guard let process else { return }
        process.signal(SIGKILL)
        earlier.withLock { $0 += Self.liveLines(in: process.standardError) }
    }

    func stop() async {
        guard let process = current.withLock({ $0 }) else { return }
        process.signal(SIGTERM)
        _ = await process.waitForExit(killingAfter: .seconds(20))
    }
}
