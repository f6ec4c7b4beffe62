import Foundation
import MQTT
import MQTTTestSupport
import Testing

/// The `webhook` action through the real engine, against a local HTTP(S) server.
@Suite("rules-engine run with webhook actions, live")
struct WebhookTests {
    static func rules(url: String, extra: String = "") -> String {
        """
        rules:
          - id: hot
            topic: "{prefix}/sensors/{room}/temperature"
            above: 30
            on_fire:
              - webhook: {url: "\(url)", body: {text: "{room} is hot", reading: "{value}"}, timeout: 5s}
        \(extra)
        """
    }

    /// Two 503s and then a 200: the third attempt delivers, with the configured headers, the Authorization
    /// header from its file, and the placeholders filled (percent-encoded in the URL).
    @Test func aWebhookIsRetriedAndCarriesItsHeaders() async throws {
        let receiver = try await WebhookReceiver(statuses: [503, 503])
        let directory = try TestBroker.makeDirectory()
        try "Bearer s3cret\n".write(toFile: directory + "/token", atomically: true, encoding: .utf8)
        try """
        endpoints:
          - url: http://127.0.0.1:\(receiver.port)/
            headers: {X-Team: ops}
            authorization_file: \(directory)/token
        """.write(toFile: directory + "/webhooks.yaml", atomically: true, encoding: .utf8)
        let harness = try await EngineHarness(
            "webhook",
            rules: Self.rules(url: "http://127.0.0.1:\(receiver.port)/hooks/{room}?rule={rule}&why={reason}")
        )
        let port = try TestBroker.freePort()
        let engine = try await harness.startEngine(
            extraArguments: ["--webhook-config", directory + "/webhooks.yaml", "--http", "127.0.0.1:\(port)"]
        )
        try await harness.reading("lab-1", "35")
        let requests = try await receiver.waitForRequests(3)
        #expect(requests.map(\.status) == [503, 503, 200])
        let last = try #require(requests.last)
        #expect(last.path == "/hooks/lab-1?rule=hot&why=value%2035%20above%2030")
        #expect(last.headers["x-team"] == "ops")
        #expect(last.headers["authorization"] == "Bearer s3cret")
        #expect(last.headers["content-type"] == "application/json")
        #expect(last.body.hasPrefix(#"{"text":"lab-1 is hot","reading":35,"rule":"hot","reason":"value 35 above 30""#))
        try await EngineHTTPTests.waitForSample(
            port,
            #"sensor_pipeline_actions_total{handler="webhook",outcome="sent"}"#,
            1
        )
        #expect(await harness.stop(engine) == 0)
        await receiver.stop()
    }

    /// HTTPS is verified: trusted through the endpoint's `ca_file` it is delivered; a URL no endpoint covers
    /// is checked against the system's roots, fails, and is counted and logged, and the engine goes on.
    @Test func httpsIsVerified() async throws {
        let directory = try TestBroker.makeDirectory()
        let certificates = try TestCertificates(in: directory)
        let receiver = try await WebhookReceiver(
            certificate: certificates.serverCertificate,
            key: certificates.serverKey
        )
        try """
        endpoints:
          - url: https://localhost:\(receiver.port)/trusted
            ca_file: \(certificates.caCertificate)
        """.write(toFile: directory + "/webhooks.yaml", atomically: true, encoding: .utf8)
        let extra = """
              - id: cold
                topic: "{prefix}/sensors/{room}/temperature"
                below: 0
                on_fire:
                  - webhook: {url: "https://localhost:\(receiver.port)/untrusted", timeout: 1s}
            """
        let harness = try await EngineHarness(
            "webhook-tls",
            rules: Self.rules(url: "https://localhost:\(receiver.port)/trusted", extra: extra)
        )
        let port = try TestBroker.freePort()
        let engine = try await harness.startEngine(
            extraArguments: ["--webhook-config", directory + "/webhooks.yaml", "--http", "127.0.0.1:\(port)"]
        )
        try await harness.reading("lab", "35")
        let requests = try await receiver.waitForRequests(1)
        #expect(requests.first?.path == "/trusted")
        try await harness.reading("cellar", "-5")
        try await EngineHTTPTests.waitForSample(
            port,
            #"sensor_pipeline_actions_total{handler="webhook",outcome="failed"}"#,
            1
        )
        #expect(receiver.requests.count == 1)
        #expect(engine.standardError.contains("action failed"))
        #expect(await harness.stop(engine) == 0)
        await receiver.stop()
    }

    /// An endpoint that never answers holds only its own action: a publish of the same transition leaves at
    /// once, and the webhook fails after its timeout.
    @Test func aSilentEndpointDoesNotHoldUpOtherActions() async throws {
        let receiver = try await WebhookReceiver(silent: true)
        let rules = """
            rules:
              - id: hot
                topic: "{prefix}/sensors/{room}/temperature"
                above: 30
                on_fire:
                  - webhook: {url: "http://127.0.0.1:\(receiver.port)/slow", timeout: 5s}
                  - publish: {topic: "{prefix}/actuators/{room}/fan/set", payload: {state: "on"}}
            """
        let harness = try await EngineHarness("webhook-slow", rules: rules)
        let port = try TestBroker.freePort()
        let engine = try await harness.startEngine(extraArguments: ["--http", "127.0.0.1:\(port)"])
        let sent = ContinuousClock.now
        try await harness.reading("lab", "35")
        #expect(try await harness.nextCommand() == "lab/fan on")
        // Well inside the webhook's 5 s, with room for a busy test run to resume this task.
        #expect(ContinuousClock.now - sent < .seconds(4))
        try await EngineHTTPTests.waitForSample(
            port,
            #"sensor_pipeline_actions_total{handler="webhook",outcome="failed"}"#,
            1
        )
        #expect(ContinuousClock.now - sent >= .seconds(5))
        #expect(await harness.stop(engine) == 0)
        await receiver.stop()
    }

    /// A webhook configuration with problems stops the start, each problem at its FILE:LINE:COL.
    @Test func aBadWebhookConfigurationIsRefusedAtStart() async throws {
        let directory = try TestBroker.makeDirectory()
        let file = directory + "/webhooks.yaml"
        try """
        endpoints:
          - url: https://hooks.example.org/
            headers: {Authorization: Bearer oops}
            authorisation_file: /nowhere
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let engine = try ChildProcess(
            builtProductPath("rules-engine"),
            [
                "run", "--rules", RulesEngineCommandTests.packageRoot + "/rules", "--webhook-config", file,
                "--broker", "mqtt://127.0.0.1:9",
            ]
        )
        #expect(await engine.waitForExit(killingAfter: .seconds(20)) == 1)
        #expect(
            engine.standardError.split(separator: "\n").map(String.init) == [
                "\(file):3:15: error: the Authorization header comes from 'authorization_file', not from 'headers'",
                "\(file):4:5: error: unknown key 'authorisation_file' in an endpoint (did you mean 'authorization_file'?)",
            ]
        )
    }
}
