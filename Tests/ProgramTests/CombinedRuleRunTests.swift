import Foundation
import MQTT
import MQTTTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("rules-engine run with a rule over two sensors, live")
struct CombinedRuleRunTests {
    static let rules = """
        rules:
          - id: vent
            all:
              - {topic: "{prefix}/sensors/{room}/humidity", above: 80, clear: 75, name: humidity}
              - {topic: "{prefix}/sensors/{room}/temperature", above: 25, clear: 24, name: temperature}
            for: 2s
            on_fire:
              - publish: {topic: "{prefix}/actuators/{room}/vent/set", payload: {state: "on", h: "{humidity}", t: "{temperature}"}}
            on_clear:
              - publish: {topic: "{prefix}/actuators/{room}/vent/set", payload: {state: "off"}}
        """

    /// Humidity alone does nothing; humidity and temperature start `for`; the engine is stopped and started
    /// again (`--state-dir`) while `for` runs, and the vent opens at the time it was due, once, with both
    /// values; the instance shows both leaves; the audit line has both readings; a leaf at its clear level
    /// closes the vent.
    @Test func aPendingForOverTwoSensorsSurvivesARestartAndFiresOnTime() async throws {
        let harness = try await EngineHarness("combined", rules: Self.rules)
        let audit = harness.stateDirectory + "/audit.jsonl"
        let firstPort = try TestBroker.freePort()
        let first = try await harness.startEngine(
            stateDir: true,
            extraArguments: ["--audit", audit, "--http", "127.0.0.1:\(firstPort)"]
        )
        try await harness.reading("lab", "85", quantity: "humidity")
        try await harness.reading("lab", "26", quantity: "temperature")
        let pendingSince = try await withTimeout(.seconds(20), "the instance pending") { () async throws -> Int64 in
            while true {
                let body = try await EngineHTTPTests.get(firstPort, "/api/instances").body
                if body.contains(#""state":"pending""#), let since = Self.number("since", inFirstOf: body) {
                    return since
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(await harness.stop(first) == 0)

        let port = try TestBroker.freePort()
        let second = try await harness.startEngine(
            stateDir: true,
            extraArguments: ["--audit", audit, "--http", "127.0.0.1:\(port)"]
        )
        let command = try await harness.commands.first(timeout: .seconds(20)) { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(command) == "lab/vent on")
        #expect(command.payloadString.contains(#""h":85,"t":26"#))
        // Due 2 s after the combination became true in the first engine, not 2 s after the restart.
        #expect(Self.number("ts", in: command.payloadString) == pendingSince + 2000)

        let instances = try await EngineHTTPTests.get(port, "/api/instances").body
        #expect(instances.contains(#""state":"firing""#))
        #expect(instances.contains(#""name":"humidity","topic":"\#(harness.prefix)/sensors/lab/humidity""#))
        #expect(instances.contains(#""value":26,"#) && !instances.contains(#""truth":"unknown""#))

        let explain = try ChildProcess(
            builtProductPath("rules-engine"),
            ["explain", "vent", "--engine", "127.0.0.1:\(port)"]
        )
        #expect(await explain.waitForExitAndOutput() == 0)
        let table = explain.output.joined(separator: "\n")
        #expect(
            table.contains("rule vent (") && table.contains("all(\(harness.prefix)/sensors/{room}/humidity above 80")
        )
        #expect(table.contains("  humidity \(harness.prefix)/sensors/lab/humidity"), "\(table)")
        #expect(table.contains("  temperature \(harness.prefix)/sensors/lab/temperature"), "\(table)")

        try await harness.reading("lab", "78", quantity: "humidity")  // latched: still humid
        try await harness.reading("lab", "75", quantity: "humidity")  // its clear level: the vent closes
        #expect(try await harness.nextCommand() == "lab/vent off")
        #expect(await harness.stop(second) == 0)

        let lines = try String(contentsOfFile: audit, encoding: .utf8).split(separator: "\n")
        let transitions = lines.filter { $0.contains(#""event":"transition""#) }
        #expect(transitions.count == 2)  // one fire (not repeated after the restart), one clear
        let fire = try #require(transitions.first)
        #expect(fire.contains(#""conditions":[{"name":"humidity""#) && fire.contains(#""name":"temperature""#))
    }

    /// `key` of the first object of a JSON array.
    static func number(_ key: String, inFirstOf json: String) -> Int64? {
        guard let data = json.data(using: .utf8),
            let array = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        else { return nil }
        return (array.first?[key] as? NSNumber)?.int64Value
    }

    static func number(_ key: String, in json: String) -> Int64? {
        guard let data = json.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return (object[key] as? NSNumber)?.int64Value
    }
}
