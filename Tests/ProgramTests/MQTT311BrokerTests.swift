import Foundation
import MQTT
import MQTTTestSupport
import NATSTestSupport
import Testing

/// The engine against a broker nobody here wrote that speaks only MQTT 3.1.1: Debian's `nats-server` with its
/// MQTT listener (JetStream on), started on free loopback ports with its own config and store, stopped by PID.
@Suite("rules-engine run against an MQTT 3.1.1 broker (NATS), live")
struct MQTT311BrokerTests {
    /// Without `--mqtt-version` the engine falls back to 3.1.1 once and says so; readings come in and commands
    /// go out; a reading published while the engine is stopped is evaluated after its restart (the session
    /// persists: clean session off).
    @Test func theEngineFallsBackToMQTT311AndKeepsItsSession() async throws {
        let nats = try await TestNATSServer(mqtt: true)
        let prefix = uniqueTopicPrefix("nats")
        let rulesDirectory = try TestBroker.makeDirectory()
        try """
        rules:
          - id: cooling
            topic: "\(prefix)/sensors/{room}/temperature"
            above: 30
            clear: 28
            on_fire:
              - publish: {topic: "\(prefix)/actuators/{room}/fan/set", payload: {state: "on"}}
            on_clear:
              - publish: {topic: "\(prefix)/actuators/{room}/fan/set", payload: {state: "off"}}
        """.write(toFile: rulesDirectory + "/rules.yaml", atomically: true, encoding: .utf8)

        var configuration = MQTTConfiguration(broker: try #require(nats.mqttURL), clientID: "\(prefix)-observer")
        configuration.protocolVersion = .v311
        let observer = try MQTTClient(configuration: configuration)
        configuration.clientID = "\(prefix)-publisher"
        let publisher = try MQTTClient(configuration: configuration)
        let commands = MessageInbox(observer)
        let clients = Task {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await observer.run() }
                group.addTask { try await publisher.run() }
            }
        }
        defer { clients.cancel() }
        try await withTimeout(.seconds(30), "clients connect to NATS") {
            try await observer.waitUntilConnected()
            try await publisher.waitUntilConnected()
        }
        try await observer.subscribe(to: ["\(prefix)/actuators/+/fan/set"], qos: .atLeastOnce)

        let arguments = [
            "run", "--rules", rulesDirectory, "--broker", try #require(nats.mqttURL).description, "--client-id",
            "\(prefix)-engine",
        ]
        let first = try ChildProcess(builtProductPath("rules-engine"), arguments)
        try await first.waitForLine("ready")
        #expect(first.standardError.contains("the broker does not speak MQTT 5: connecting again with MQTT 3.1.1"))
        try await publisher.publish("35", to: "\(prefix)/sensors/lab/temperature", qos: .atLeastOnce)
        let on = try await commands.first(timeout: .seconds(20)) { _ in true }
        #expect(EngineHarness.describe(on) == "lab/fan on")

        first.signal(SIGTERM)
        #expect(await first.waitForExit(killingAfter: .seconds(20)) == 0)
        try await publisher.publish("36", to: "\(prefix)/sensors/hall/temperature", qos: .atLeastOnce)
        let second = try ChildProcess(builtProductPath("rules-engine"), arguments)
        try await second.waitForLine("ready")
        let hall = try await commands.first(timeout: .seconds(20)) { _ in true }
        #expect(EngineHarness.describe(hall) == "hall/fan on")
        second.signal(SIGTERM)
        #expect(await second.waitForExit(killingAfter: .seconds(20)) == 0)
        await nats.stop()
    }

    /// `--mqtt-version 5` is taken at its word: no fallback, the refusal is the error.
    @Test func anExplicitMQTT5IsNotDowngraded() async throws {
        let nats = try await TestNATSServer(mqtt: true)
        let engine = try ChildProcess(
            builtProductPath("rules-engine"),
            [
                "run", "--rules", RulesEngineCommandTests.packageRoot + "/rules", "--broker",
                try #require(nats.mqttURL).description,
                "--mqtt-version", "5",
            ]
        )
        #expect(await engine.waitForExit(killingAfter: .seconds(30)) == 1)
        #expect(engine.standardError.contains("Unsupported Protocol Version"), "\(engine.standardError)")
        await nats.stop()
    }
}
