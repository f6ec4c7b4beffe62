import Foundation
import MQTT
import MQTTTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `rules-engine run --alertmanager`, against Debian's real `prometheus-alertmanager` on a loopback port.
@Suite("rules-engine run --alertmanager, live")
struct AlertmanagerTests {
    static let rules = """
        rules:
          - id: freezer-hot
            description: A freezer above -10 °C spoils its food.
            topic: "{prefix}/sensors/{freezer}/temperature"
            above: -10
            clear: -15
            severity: critical
            on_fire:
              - publish: {topic: "{prefix}/actuators/{freezer}/alarm/set", payload: {state: "on"}}
            on_clear:
              - publish: {topic: "{prefix}/actuators/{freezer}/alarm/set", payload: {state: "off"}}
        """

    /// Two Alertmanagers (an HA pair) each get every alert. The engine starts before the first one (a post
    /// that fails is tried again, and does not hold up the other); the alert carries the rule's
    /// labels and annotations; a restarted Alertmanager gets it again within the resend interval; a restarted
    /// engine (`--state-dir`) posts what fires at once; a clear resolves it.
    @Test func aFiringInstanceIsAnAlertUntilItClears() async throws {
        let harness = try await EngineHarness("alertmanager", rules: Self.rules)
        let port = try TestBroker.freePort()
        let httpPort = try TestBroker.freePort()
        // The other member of an HA pair is up from the start; it gets every alert too.
        let pairPort = try TestBroker.freePort()
        let pair = try await TestAlertmanager(port: pairPort)
        let arguments = [
            "--alertmanager", "http://127.0.0.1:\(port)", "--alertmanager", "http://127.0.0.1:\(pairPort)",
            "--alertmanager-resend-interval", "1s", "--http", "127.0.0.1:\(httpPort)",
        ]
        let first = try await harness.startEngine(stateDir: true, extraArguments: arguments)
        try await harness.reading("chest-1", "-4")
        #expect(try await harness.nextCommand() == "chest-1/alarm on")
        try await withTimeout(.seconds(20), "a failed post") {
            while !first.standardError.contains("cannot post alerts to Alertmanager; trying again") {
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        var alertmanager = try await TestAlertmanager(port: port)
        let alert = try await alertmanager.waitForAlert(named: "freezer-hot")
        #expect(alert.labels == ["alertname": "freezer-hot", "severity": "critical", "freezer": "chest-1"])
        #expect(
            alert.annotations == [
                "description": "A freezer above -10 °C spoils its food.", "reason": "value -4 above -10", "value": "-4",
            ]
        )
        #expect(alert.generatorURL == "http://127.0.0.1:\(httpPort)/?rule=freezer-hot")
        #expect(try await pair.waitForAlert(named: "freezer-hot").labels == alert.labels)
        // Logged once the post's answer is back, which can be after Alertmanager shows the alert.
        try await withTimeout(.seconds(20), "the engine says Alertmanager takes alerts again") {
            while !first.standardError.contains("Alertmanager takes alerts again") {
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        // Alertmanager keeps no alerts across a restart: the engine's next re-post puts it back.
        await alertmanager.stop()
        alertmanager = try await TestAlertmanager(port: port)
        _ = try await alertmanager.waitForAlert(named: "freezer-hot")

        // The engine restarts while Alertmanager is empty again: the restored instance is posted at the start.
        #expect(await harness.stop(first) == 0)
        await alertmanager.stop()
        alertmanager = try await TestAlertmanager(port: port)
        let second = try await harness.startEngine(stateDir: true, extraArguments: arguments)
        _ = try await alertmanager.waitForAlert(named: "freezer-hot")

        try await harness.reading("chest-1", "-20")
        #expect(try await harness.nextCommand() == "chest-1/alarm off")
        try await alertmanager.waitForNoAlert(named: "freezer-hot")
        try await pair.waitForNoAlert(named: "freezer-hot")
        await pair.stop()
        #expect(await harness.stop(second) == 0)
        await alertmanager.stop()
    }
}

extension AlertmanagerTests {
    /// The example configuration in docs/alertmanager/ is valid (and the live test runs Alertmanager with it).
    @Test func theShippedConfigurationPassesAmtool() async throws {
        let amtool = try ChildProcess(
            "/bin/sh",
            ["-c", "amtool check-config '\(TestAlertmanager.shippedConfiguration)' 2>&1; echo \"exit $?\""]
        )
        _ = await amtool.waitForExitAndOutput()
        #expect(amtool.output.last == "exit 0", "\(amtool.output.joined(separator: "\n"))")
    }
}

/// A private `prometheus-alertmanager` on a loopback port with the shipped example configuration, clustering
/// off, its own storage; stopped by PID.
struct TestAlertmanager {
    static let shippedConfiguration = RulesEngineCommandTests.packageRoot + "/docs/alertmanager/alertmanager.yml"

    let port: Int
    let process: ChildProcess

    init(port: Int) async throws {
        self.port = port
        let directory = try TestBroker.makeDirectory()
        process = try ChildProcess(
            "prometheus-alertmanager",
            [
                "--config.file=\(Self.shippedConfiguration)", "--storage.path=\(directory)/data",
                "--web.listen-address=127.0.0.1:\(port)", "--cluster.listen-address=",
            ]
        )
        try await withTimeout(.seconds(30), "Alertmanager ready on port \(port)") {
            while (try? await EngineHTTPTests.get(port, "/-/ready").status) != 200 {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    func stop() async {
        process.signal(SIGTERM)
        _ = await process.waitForExit(killingAfter: .seconds(10))
    }

    /// What a test reads of an alert in `GET /api/v2/alerts`.
    struct ListedAlert: Decodable, Sendable {
        var labels: [String: String]
        var annotations: [String: String]
        var generatorURL: String?
    }

    /// The alerts Alertmanager holds (active ones: a resolved alert is not listed).
    func alerts() async throws -> [ListedAlert] {
        let body = try await EngineHTTPTests.get(port, "/api/v2/alerts").body
        return try JSONDecoder().decode([ListedAlert].self, from: Data(body.utf8))
    }

    func waitForAlert(named name: String) async throws -> ListedAlert {
        try await withTimeout(.seconds(20), "alert \(name) in Alertmanager") { () async throws -> ListedAlert in
            while true {
                if let found = try await alerts().first(where: { $0.labels["alertname"] == name }) { return found }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    func waitForNoAlert(named name: String) async throws {
        try await withTimeout(.seconds(20), "alert \(name) resolved in Alertmanager") {
            while try await alerts().contains(where: { $0.labels["alertname"] == name }) {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}
