import Foundation
import Logging
import MQTT
import MQTTTestSupport
import NATS
import NATSTestSupport
import PartitionLeases
import Testing

/// `rules-engine run --nats`: two real engines share four partitions of a real `nats-server` (JetStream, MQTT
/// listener, the partition mapping), on private loopback ports, stopped by PID.
@Suite("rules-engine run --nats: partitions, takeover and fencing, live")
struct ScaleOutRunTests {
    static let partitions = 4
    static let devices = (1...12).map { "d\($0)" }

    /// When an engine is killed.
    enum KillPoint: String, CaseIterable, Sendable {
        /// While the `for: 2s` of its readings is pending: the timers must fire at the new owner, at their time.
        case timersPending
        /// After its decisions were delivered, with no snapshot since (60 s interval): the new owner replays
        /// the same readings and must not deliver their decisions again.
        case decisionsDelivered
    }

    /// An engine is killed; the other takes its partitions over within the lease TTL and every device gets
    /// exactly one `on` and one `off` (and the decisions stream records each transition once).
    @Test(arguments: KillPoint.allCases)
    func aKilledEnginesPartitionsAreTakenOver(at kill: KillPoint) async throws {
        let cluster = try await ScaleOutCluster()
        let snapshotInterval = kill == .timersPending ? "1s" : "60s"
        let a = try await cluster.startEngine("a", snapshotInterval: snapshotInterval)
        let b = try await cluster.startEngine("b", snapshotInterval: snapshotInterval)
        defer {
            a.signal(SIGKILL)
            b.signal(SIGKILL)
        }
        let owners = try await cluster.waitForOwners { Set($0.values) == ["a", "b"] }
        let devicesOfA = Set(Self.devices.filter { owners[cluster.partition(of: $0)] == "a" })
        #expect(!devicesOfA.isEmpty)

        let published = Date().timeIntervalSince1970 * 1000
        for device in Self.devices { try await cluster.reading(device, 35) }
        var on: [ScaleOutCluster.Command] = []
        switch kill {
        case .timersPending:
            try await cluster.waitForStoredReadings(Self.devices.count)
            a.signal(SIGKILL)
            _ = await a.waitForExit()
            on = try await cluster.commands(Self.devices.count)
            for command in on where devicesOfA.contains(command.device) {
                // Fired at its time (the reading's stored time + 2 s), though A was dead then.
                #expect(abs(command.timestamp - (published + 2000)) < 1500, "\(command)")
            }
        case .decisionsDelivered:
            on = try await cluster.commands(Self.devices.count)
            a.signal(SIGKILL)
            _ = await a.waitForExit()
            _ = try await cluster.waitForOwners { Set($0.values) == ["b"] }
        }
        #expect(Set(on.map(\.device)) == Set(Self.devices))
        #expect(on.allSatisfy { $0.state == "on" && $0.epoch != nil })
        for device in Self.devices { try await cluster.reading(device, 20) }
        // A repeated `on` would arrive before these.
        let off = try await cluster.commands(Self.devices.count)
        #expect(Set(off.map(\.device)) == Set(Self.devices))
        #expect(off.allSatisfy { $0.state == "off" }, "\(off)")

        let decisions = try await cluster.decisions()
        #expect(decisions.transitions.count == 2 * Self.devices.count, "\(decisions.transitions)")
        #expect(Set(decisions.transitions).count == decisions.transitions.count, "a transition recorded twice")
        #expect(decisions.overlaps.isEmpty, "records of a deposed owner: \(decisions.overlaps)")
        b.signal(SIGTERM)
        #expect(await b.waitForExit() == 0)
    }

    /// An engine paused (SIGSTOP) past its lease is a zombie when it resumes: its partitions were taken over,
    /// it stops evaluating them, and nothing it decides reaches the decisions stream or the actuators.
    @Test func aResumedZombieEmitsNothing() async throws {
        let cluster = try await ScaleOutCluster()
        let a = try await cluster.startEngine("a")
        let b = try await cluster.startEngine("b")
        defer {
            a.signal(SIGCONT)
            a.signal(SIGKILL)
            b.signal(SIGKILL)
        }
        _ = try await cluster.waitForOwners { Set($0.values) == ["a", "b"] }
        a.signal(SIGSTOP)
        _ = try await cluster.waitForOwners { Set($0.values) == ["b"] && $0.count == Self.partitions }
        for device in Self.devices { try await cluster.reading(device, 35) }
        let on = try await cluster.commands(Self.devices.count)
        #expect(Set(on.map(\.device)) == Set(Self.devices))
        a.signal(SIGCONT)
        try await withTimeout(.seconds(20), "the zombie notices") {
            while !a.standardError.contains("partition lost: no longer evaluated here") {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        for device in Self.devices { try await cluster.reading(device, 20) }
        let off = try await cluster.commands(Self.devices.count)
        #expect(Set(off.map(\.device)) == Set(Self.devices))
        #expect(off.allSatisfy { $0.state == "off" })

        let decisions = try await cluster.decisions()
        #expect(decisions.transitions.count == 2 * Self.devices.count)
        #expect(Set(decisions.transitions).count == decisions.transitions.count, "a transition recorded twice")
        #expect(decisions.overlaps.isEmpty, "records of a deposed owner: \(decisions.overlaps)")
    }
}

extension ScaleOutRunTests {
    /// SIGHUP does not reload one engine of a cluster (they must decide alike) and does not end it either
    /// (SIGHUP's default): it says what to do instead, and the engine goes on evaluating.
    @Test func sighupExplainsTheRollingRestartAndTheEngineGoesOn() async throws {
        let cluster = try await ScaleOutCluster()
        let engine = try await cluster.startEngine("hup")
        defer { engine.signal(SIGKILL) }
        engine.signal(SIGHUP)
        try await withTimeout(.seconds(20), "the engine answers SIGHUP") {
            while !engine.standardError.contains("SIGHUP: with --nats the rules are not reloaded") {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        _ = try await cluster.waitForOwners { $0.count == Self.partitions }
        for device in Self.devices { try await cluster.reading(device, 35) }
        let on = try await cluster.commands(Self.devices.count)
        #expect(Set(on.map(\.device)) == Set(Self.devices))
    }
}

extension ScaleOutRunTests {
    /// An engine whose lease is older than the last owner seen in the decisions stream (a stale lease: it was
    /// deposed and has not noticed yet) does not take the partition: it writes no takeover mark, so the newer
    /// owner is not fenced by a stale one.
    @Test func aStaleLeaseDoesNotTakeOverFromANewerOwner() async throws {
        let cluster = try await ScaleOutCluster()
        try await cluster.connection.createStream(named: "DECISIONS", subjects: ["decisions.>"])
        for partition in 0..<Self.partitions {
            try await cluster.connection.publishToStream(
                Array(#"{"partition":\#(partition),"epoch":999999,"sequence":0,"engine":"newer","decisions":[]}"#.utf8),
                subject: "decisions.\(partition)"
            )
        }
        let engine = try await cluster.startEngine("stale")
        defer { engine.signal(SIGKILL) }
        try await withTimeout(.seconds(30), "the engine sees the newer owner on every partition") {
            while engine.standardError.components(separatedBy: "a newer owner has taken the partition over").count
                <= Self.partitions
            {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(try await cluster.connection.messageCount(inStream: "DECISIONS") == UInt64(Self.partitions))
    }
}

extension ScaleOutRunTests {
    /// Desired-state re-sends keep working across a takeover: the new owner learns what the dead one had asked
    /// for from the replay (its decisions not delivered again), and re-sends it when the actuator reports
    /// another state, under its own epoch.
    @Test func theNewOwnerResendsWhatTheDeadOneAskedFor() async throws {
        let cluster = try await ScaleOutCluster()
        let a = try await cluster.startEngine(
            "a",
            snapshotInterval: "60s",
            extraArguments: ["--resend-interval", "1s"]
        )
        defer { a.signal(SIGKILL) }
        _ = try await cluster.waitForOwners { Set($0.values) == ["a"] }
        try await cluster.reading("d1", 35)
        let on = try #require(try await cluster.commands(1).first)
        #expect(on.device == "d1" && on.state == "on")
        a.signal(SIGKILL)
        _ = await a.waitForExit()

        let b = try await cluster.startEngine(
            "b",
            snapshotInterval: "60s",
            extraArguments: ["--resend-interval", "1s"]
        )
        defer { b.signal(SIGKILL) }
        _ = try await cluster.waitForOwners { Set($0.values) == ["b"] }
        try await withTimeout(.seconds(30), "every partition is live at b") {
            while b.standardError.components(separatedBy: "partition live").count <= Self.partitions {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        try await cluster.publisher.publish(#"{"state": "off"}"#, to: "actuators/d1/fan/state", qos: .atLeastOnce)
        let again = try #require(try await cluster.commands(1).first)
        #expect(again.device == "d1" && again.state == "on")
        #expect(again.epoch != nil && again.epoch != on.epoch, "re-sent under the new owner's epoch")
    }
}

/// One `nats-server` with JetStream, an MQTT listener and the mapping of `sensors.*.*` into 4 partitions; a
/// rules folder; an MQTT observer of the commands and a publisher of readings; a NATS connection to look into
/// the streams and the lease bucket.
final class ScaleOutCluster: Sendable {
    let nats: TestNATSServer
    let rulesDirectory: String
    let connection: NATSConnection
    let publisher: MQTTClient
    let inbox: MessageInbox
    private let clients: Task<Void, any Error>

    init() async throws {
        let partitioning = DevicePartitioning(partitions: ScaleOutRunTests.partitions)
        nats = try await TestNATSServer(
            mqtt: true,
            extraConfiguration: """
                mappings = { "\(partitioning.subjectMapping.source)": "\(partitioning.subjectMapping.destination)" }
                """
        )
        rulesDirectory = try TestBroker.makeDirectory()
        try """
        rules:
          - id: hot
            topic: sensors/{device}/temperature
            above: 30
            clear: 28
            for: 2s
            on_fire:
              - publish: {topic: "actuators/{device}/fan/set", payload: {state: "on"}}
            on_clear:
              - publish: {topic: "actuators/{device}/fan/set", payload: {state: "off"}}
        """.write(toFile: rulesDirectory + "/rules.yaml", atomically: true, encoding: .utf8)
        let prefix = uniqueTopicPrefix("scale-out")
        var configuration = MQTTConfiguration(broker: try #require(nats.mqttURL), clientID: "\(prefix)-observer")
        configuration.protocolVersion = .v311
        let observer = try MQTTClient(configuration: configuration)
        configuration.clientID = "\(prefix)-publisher"
        let publisher = try MQTTClient(configuration: configuration)
        self.publisher = publisher
        inbox = MessageInbox(observer)
        clients = Task {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await observer.run() }
                group.addTask { try await publisher.run() }
            }
        }
        try await withTimeout(.seconds(30), "clients connect to NATS") {
            try await observer.waitUntilConnected()
            try await publisher.waitUntilConnected()
        }
        try await observer.subscribe(to: ["actuators/+/fan/set"], qos: .atLeastOnce)
        connection = try await NATSConnection.connect(
            NATSConfiguration(servers: [nats.url], name: "\(prefix)-inspector"),
            logger: .init(label: "scale-out-test")
        )
    }

    deinit {
        clients.cancel()
        connection.close()
    }

    func partition(of device: String) -> Int {
        DevicePartitioning(partitions: ScaleOutRunTests.partitions).partition(ofDevice: device)
    }

    /// `rules-engine run --nats` with a 2 s lease, once it says `ready`.
    func startEngine(
        _ id: String,
        snapshotInterval: String = "1s",
        extraArguments: [String] = []
    ) async throws -> ChildProcess {
        let engine = try ChildProcess(
            builtProductPath("rules-engine"),
            [
                "run", "--rules", rulesDirectory, "--nats", nats.url, "--partitions", "\(ScaleOutRunTests.partitions)",
                "--engine-id", id, "--broker", try #require(nats.mqttURL).description, "--lease-ttl", "2s",
                "--snapshot-interval", snapshotInterval, "--log-level", "debug",
            ] + extraArguments
        )
        try await engine.waitForLine("ready")
        return engine
    }

    /// Publishes `{"value": V}` on `sensors/<device>/temperature` at QoS 1.
    func reading(_ device: String, _ value: Double) async throws {
        try await publisher.publish(#"{"value": \#(value)}"#, to: "sensors/\(device)/temperature", qos: .atLeastOnce)
    }

    /// Waits until the lease bucket's owners (partition → engine id) satisfy `condition`; returns them.
    func waitForOwners(_ condition: @escaping @Sendable ([Int: String]) -> Bool) async throws -> [Int: String] {
        try await withTimeout(.seconds(40), "the leases settle") {
            let leases = try await self.connection.keyValue(bucket: "sensor-pipeline-leases", ttl: .seconds(2))
            while true {
                var owners: [Int: String] = [:]
                for partition in 0..<ScaleOutRunTests.partitions {
                    if let entry = try await leases.get("partition.\(partition)") {
                        owners[partition] = String(decoding: entry.value, as: UTF8.self)
                    }
                }
                if owners.count == ScaleOutRunTests.partitions, condition(owners) { return owners }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Waits until the readings stream holds `count` readings (ticks aside).
    func waitForStoredReadings(_ count: Int) async throws {
        try await withTimeout(.seconds(20), "the readings are stored") {
            while try await self.readingsStored() < count { try await Task.sleep(for: .milliseconds(50)) }
        }
    }

    private func readingsStored() async throws -> Int {
        var stored = 0
        for try await message in try connection.readStream("READINGS", filter: "part.*.sensors.>") {
            stored += 1
            if message.pendingAfter == 0 { break }
        }
        return stored
    }

    struct Command: Sendable, CustomStringConvertible {
        var device: String
        var state: String
        var timestamp: Double
        var epoch: Int?
        var description: String { "\(device) \(state) ts=\(Int(timestamp)) epoch=\(epoch.map(String.init) ?? "none")" }
    }

    /// The next `count` commands.
    func commands(_ count: Int) async throws -> [Command] {
        try await inbox.next(count, timeout: .seconds(30)).map { message in
            let object = (try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any]) ?? [:]
            return Command(
                device: String(message.topic.split(separator: "/")[1]),
                state: object["state"] as? String ?? "?",
                timestamp: object["ts"] as? Double ?? 0,
                epoch: object["epoch"] as? Int
            )
        }
    }

    /// What the decisions stream holds: each transition as `device fire|clear ts`, and the records written by
    /// an epoch after a newer epoch's takeover mark on the same partition (must be none).
    func decisions() async throws -> (transitions: [String], overlaps: [String]) {
        var transitions: [String] = []
        var overlaps: [String] = []
        var newestEpoch: [Int: Int] = [:]
        for try await message in try connection.readStream("DECISIONS", filter: "decisions.>") {
            let record = try #require(try JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any])
            let partition = try #require(record["partition"] as? Int)
            let epoch = try #require(record["epoch"] as? Int)
            if epoch < newestEpoch[partition, default: 0] {
                overlaps.append("partition \(partition) epoch \(epoch) after \(newestEpoch[partition]!)")
            }
            newestEpoch[partition] = max(epoch, newestEpoch[partition, default: 0])
            for case let decision as [String: Any] in record["decisions"] as? [Any] ?? []
            where decision["event"] as? String == "transition" {
                let labels = decision["labels"] as? [String: Any] ?? [:]
                transitions.append(
                    "\(labels["device"] ?? "?") \(decision["transition"] ?? "?") \(decision["ts"] ?? "?")"
                )
            }
            if message.pendingAfter == 0 { break }
        }
        return (transitions, overlaps)
    }
}
