import Foundation
import MQTT
import MQTTTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("rules-engine run --http and explain, live")
struct EngineHTTPTests {
    static let rules = """
        rules:
          - id: cooling
            topic: "{prefix}/sensors/{room}/temperature"
            above: 30
            clear: 28
            on_fire:
              - publish: {topic: "{prefix}/actuators/{room}/fan/set", payload: {state: "on"}}
            on_clear:
              - publish: {topic: "{prefix}/actuators/{room}/fan/set", payload: {state: "off"}}
        """

    static func get(_ port: Int, _ path: String) async throws -> (status: Int, body: String) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// `HEAD path`'s status.
    static func head(_ port: Int, _ path: String) async throws -> Int {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = "HEAD"
        let (_, response) = try await URLSession.shared.data(for: request)
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }

    /// What Debian's `promtool check metrics` says of an exposition (empty when it has no complaint).
    static func promtool(checkingMetrics exposition: String) async throws -> String {
        let file = try TestBroker.makeDirectory() + "/metrics.txt"
        try exposition.write(toFile: file, atomically: true, encoding: .utf8)
        let promtool = try ChildProcess("/bin/sh", ["-c", "promtool check metrics < '\(file)' 2>&1; echo \"exit $?\""])
        _ = await promtool.waitForExitAndOutput()
        let output = promtool.output.joined(separator: "\n")
        return output == "exit 0" ? "" : output
    }

    /// The alerting rules shipped for the engine itself load, and each fires on the series it should
    /// (`promtool test rules` with docs/prometheus/rules.test.yml).
    @Test func theEnginesOwnAlertingRulesPassPromtool() async throws {
        let directory = RulesEngineCommandTests.packageRoot + "/docs/prometheus"
        for command in ["promtool check rules rules.yml", "promtool test rules rules.test.yml"] {
            let run = try ChildProcess("/bin/sh", ["-c", "cd '\(directory)' && \(command) 2>&1; echo \"exit $?\""])
            _ = await run.waitForExitAndOutput()
            #expect(run.output.last == "exit 0", "\(command): \(run.output.joined(separator: "\n"))")
        }
    }

    /// A sample's value in Prometheus text (`name` or `name{labels}` exactly), nil when absent.
    static func sample(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    /// Polls `/metrics` until `series` reaches `value` (an action is counted once the broker acknowledged it).
    static func waitForSample(_ port: Int, _ series: String, _ value: Double) async throws {
        try await withTimeout(.seconds(10), "\(series) reaching \(value)") {
            while try await sample(get(port, "/metrics").body, series) != value {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    @Test func metricsHealthInstancesAndExplainFollowTheReadings() async throws {
        let harness = try await EngineHarness("http", rules: Self.rules)
        let port = try TestBroker.freePort()
        let engine = try await harness.startEngine(extraArguments: ["--http", "127.0.0.1:\(port)"])
        // `ready` waits for the HTTP server too.
        #expect(try await Self.get(port, "/healthz") == (200, "ok\n"))
        let initial = try await Self.get(port, "/metrics")
        #expect(initial.status == 200)
        #expect(Self.sample(initial.body, "sensor_pipeline_readings_received_total") == 0)
        #expect(Self.sample(initial.body, "sensor_pipeline_rules_loaded") == 1)
        #expect(Self.sample(initial.body, "sensor_pipeline_mqtt_connected") == 1)

        try await harness.reading("lab", "{\"value\": 31, \"seq\": 1}")
        #expect(try await harness.nextCommand() == "lab/fan on")
        try await harness.reading("lab", "{\"value\": \"warm\", \"seq\": 2}")
        try await harness.reading("lab", "{\"value\": 29, \"seq\": 5}")
        try await Self.waitForSample(port, "sensor_pipeline_readings_evaluated_total", 3)
        try await Self.waitForSample(port, "sensor_pipeline_actions_total{handler=\"publish\",outcome=\"sent\"}", 1)
        let metrics = try await Self.get(port, "/metrics").body
        #expect(Self.sample(metrics, "sensor_pipeline_readings_received_total") == 3)
        #expect(
            Self.sample(metrics, "sensor_pipeline_rule_transitions_total{rule=\"cooling\",transition=\"fire\"}") == 1
        )
        #expect(Self.sample(metrics, "sensor_pipeline_readings_rejected_total{reason=\"not_a_number\"}") == 1)
        #expect(Self.sample(metrics, "sensor_pipeline_readings_lost_total") == 2)
        #expect(Self.sample(metrics, "sensor_pipeline_evaluation_duration_seconds_count") == 3)
        #expect(try await Self.promtool(checkingMetrics: metrics) == "")
        #expect(try await Self.head(port, "/metrics") == 200)

        let instances = try await Self.get(port, "/api/instances")
        #expect(instances.status == 200)
        #expect(instances.body.hasPrefix("[{\"rule\":\"cooling\",\"labels\":{\"room\":\"lab\"},\"state\":\"firing\""))
        #expect(instances.body.contains("\"last_value\":29"))
        #expect(instances.body.contains("\"last_reason\":\"value 31 above 30\""))
        #expect(try await Self.get(port, "/api/instances?rule=other").body == "[]")
        // The last commands, newest first (pipeline-monitor --engine lists them).
        let commands = try await Self.get(port, "/api/commands").body
        #expect(commands.hasPrefix(#"[{"ts":"#), "\(commands)")
        #expect(commands.contains(#""topic":"\#(harness.prefix)/actuators/lab/fan/set","state":"on","rule":"cooling""#))
        let rules = try await Self.get(port, "/api/rules").body
        #expect(rules.contains("\"id\":\"cooling\""))
        #expect(rules.contains("rules.yaml:2\""))

        let explain = try ChildProcess(
            builtProductPath("rules-engine"),
            ["explain", "cooling", "--engine", "127.0.0.1:\(port)"]
        )
        #expect(await explain.waitForExitAndOutput() == 0)
        let table = explain.output.joined(separator: "\n")
        #expect(table.contains("rule cooling ("), "\(table)")
        #expect(table.contains("room=lab  firing"), "\(table)")
        #expect(table.contains("value 31 above 30"), "\(table)")
        #expect(
            rules.contains(
                #""on_fire":[{"publish":"\#(harness.prefix)/actuators/{room}/fan/set","payload":{"state":"on"}"#
            )
        )
        #expect(rules.contains(#""cooldown":"0s","min_on":"0s""#), "\(rules)")

        // Without a rule id: every rule with its instances by state; an unknown id names the loaded ones.
        let list = try ChildProcess(builtProductPath("rules-engine"), ["explain", "--engine", "127.0.0.1:\(port)"])
        #expect(await list.waitForExitAndOutput() == 0)
        #expect(list.output.first?.hasPrefix("RULE ") == true, "\(list.output)")
        #expect(
            list.output.dropFirst().first?.hasPrefix("cooling  1          1       0        ") == true,
            "\(list.output)"
        )
        let unknown = try ChildProcess(
            builtProductPath("rules-engine"),
            ["explain", "nope", "--engine", "127.0.0.1:\(port)"]
        )
        #expect(await unknown.waitForExitAndOutput() == 1)
        let complaint = unknown.standardError
        #expect(complaint.contains("rule nope: not loaded in this engine; its rules are: cooling"), "\(complaint)")
        #expect(unknown.output.isEmpty, "\(unknown.output)")

        harness.broker.stop()
        try await withTimeout(.seconds(20), "healthz turning 503") {
            while true {
                let (status, body) = try await Self.get(port, "/healthz")
                // The reason, then what libmosquitto said of the lost connection.
                if status == 503 && body.hasPrefix("not connected to the broker: ") { break }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(Self.sample(try await Self.get(port, "/metrics").body, "sensor_pipeline_mqtt_connected") == 0)
        #expect(await harness.stop(engine) == 0)
    }

    @Test func explainSaysWhenTheEngineCannotBeReached() async throws {
        let port = try TestBroker.freePort()
        let explain = try ChildProcess(
            builtProductPath("rules-engine"),
            ["explain", "x", "--engine", "127.0.0.1:\(port)"]
        )
        #expect(await explain.waitForExit() != 0)
        #expect(explain.standardError.contains("cannot reach the engine at http://127.0.0.1:\(port)/api/rules"))
    }

    @Test func aBadHTTPAddressIsRefusedAtStart() async throws {
        let engine = try ChildProcess(builtProductPath("rules-engine"), ["run", "--rules", ".", "--http", "nowhere"])
        #expect(await engine.waitForExit() != 0)
        #expect(engine.standardError.contains("--http 'nowhere' is not HOST:PORT"))
    }
}
