import Foundation
import MQTT
import MQTTTestSupport
import Testing

/// Commands past `--max-unacknowledged-commands`, through a real mosquitto: actuator commands are held back one
/// per topic (the latest wins), alerts are never dropped, and SIGTERM delivers what was held.
@Suite("rules-engine run, commands in a storm, live")
struct CommandStormTests {
    @Test func heldBackCommandsKeepTheLatestPerActuatorAndEveryAlert() async throws {
        let harness = try await EngineHarness(
            "storm",
            rules: """
                rules:
                  - id: hot
                    topic: "{prefix}/sensors/{device}/temperature"
                    above: 25
                    clear: 23
                    on_fire:
                      - publish: {topic: "{prefix}/actuators/{device}/fan/set", payload: {state: "on"}}
                      - publish: {topic: "{prefix}/alerts/{device}", payload: {state: "hot"}}
                    on_clear:
                      - publish: {topic: "{prefix}/actuators/{device}/fan/set", payload: {state: "off"}}
                """
        )
        try await harness.observer.subscribe(to: ["\(harness.prefix)/alerts/#"])
        // A bound of 1: each fire's second command (the alert) waits for the first one's acknowledgement.
        let engine = try await harness.startEngine(extraArguments: ["--max-unacknowledged-commands", "1"])
        let fires = 100
        var receipts: [MQTTClient.PublishReceipt] = []
        for index in 0..<(2 * fires) {
            receipts.append(
                try harness.publisher.send(
                    Array("{\"value\": \(index % 2 == 0 ? 30 : 20)}".utf8),
                    to: "\(harness.prefix)/sensors/d1/temperature",
                    qos: .atLeastOnce
                )
            )
        }
        for receipt in receipts { try await harness.publisher.acknowledgement(of: receipt) }

        var alerts = 0
        var fan: [String] = []
        // Every alert arrives (none is replaced), then SIGTERM delivers whatever is still held.
        while alerts < fires {
            let message = try await harness.commands.next()
            if message.topic.hasSuffix("/alerts/d1") { alerts += 1 }
            if message.topic.hasSuffix("/fan/set") { fan.append(JSONValueText.state(in: message.payloadString)) }
        }
        engine.signal(SIGTERM)
        while true {
            let message = try await harness.commands.next()
            if message.topic.hasSuffix("/status"), message.payloadString == "offline" { break }
            if message.topic.hasSuffix("/alerts/d1") { alerts += 1 }
            if message.topic.hasSuffix("/fan/set") { fan.append(JSONValueText.state(in: message.payloadString)) }
        }
        #expect(await engine.waitForExit() == 0)
        #expect(alerts == fires, "an alert is never superseded")
        #expect(fan.last == "off", "the fan ends in the state the last reading decided")
        #expect(fan.count <= 2 * fires)
        #expect(engine.standardError.contains("commands held back"), "the bound was reached: \(fan.count) fan commands")
    }
}
