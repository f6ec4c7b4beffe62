import CoreMetrics
import EngineHTTP
import FileFormats
import Hummingbird
import HummingbirdTesting
import Prometheus
import Rules
import RulesEngineDaemon
import Testing

/// The HTTP routes in process: a read model of the test's own (rules loaded from text, instances from a real
/// evaluator), Hummingbird's test client, no broker and no socket.
@Suite("Engine HTTP routes, in process")
struct EngineHTTPRouteTests {
    struct ReadModel: EngineReadModel {
        var healthProblem: String?
        var ruleSet: RuleSet
        var reports: [InstanceReport]
        var snapshot: JSONValue

        func instanceReports(ruleID: String?) -> [InstanceReport] {
            reports.filter { ruleID == nil || $0.ruleID == ruleID }
        }

        func liveSnapshot() -> JSONValue { snapshot }
    }

    static func model(healthProblem: String? = nil) throws -> ReadModel {
        let ruleSet = try RuleLoader.load([
            RuleSource(
                path: "rules.yaml",
                text: """
                    rules:
                      - id: cooling
                        topic: sensors/{room}/temperature
                        above: 30
                        on_fire:
                          - publish: {topic: "actuators/{room}/fan/set", payload: {state: "on"}}
                    """
            )
        ])
        var evaluator = Evaluator(ruleSet: ruleSet)
        var events: [EvaluationEvent] = []
        evaluator.process(Reading(topic: "sensors/lab/temperature", payload: "31", timestamp: 1000), into: &events)
        let command = JSONValue.object([
            ("ts", .number(1000)), ("topic", .string("actuators/lab/fan/set")), ("state", .string("on")),
            ("rule", .string("cooling")), ("reason", .string("value 31 above 30")),
        ])
        return ReadModel(
            healthProblem: healthProblem,
            ruleSet: ruleSet,
            reports: evaluator.instanceReports(),
            snapshot: .object([("commands", .array([command]))])
        )
    }

    /// Runs `body` against the routes of `model`.
    static func withRoutes(
        _ model: ReadModel,
        _ body: @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let registry = PrometheusCollectorRegistry()
        // Made as the engine makes its metrics: through the Prometheus factory of swift-metrics.
        EngineHTTPServer.metricsFactory(registry: registry)
            .makeCounter(label: "sensor_pipeline_readings_received_total", dimensions: [])
            .increment(by: 3)
        let application = Application(router: EngineHTTPServer.router(engine: model, registry: registry))
        try await application.test(.router, body)
    }

    @Test func healthSaysWhyItIsNot() async throws {
        try await Self.withRoutes(try Self.model()) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "ok\n")
            }
        }
        try await Self.withRoutes(try Self.model(healthProblem: "no rules loaded")) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body) == "no rules loaded\n")
            }
        }
    }

    @Test func instancesRulesExplainAndCommands() async throws {
        try await Self.withRoutes(try Self.model()) { client in
            try await client.execute(uri: "/api/instances", method: .get) { response in
                #expect(response.status == .ok)
                let body = String(buffer: response.body)
                #expect(body.hasPrefix(#"[{"rule":"cooling","labels":{"room":"lab"},"state":"firing""#), "\(body)")
            }
            try await client.execute(uri: "/api/instances?rule=other", method: .get) { response in
                #expect(String(buffer: response.body) == "[]")
            }
            try await client.execute(uri: "/api/rules", method: .get) { response in
                let body = String(buffer: response.body)
                #expect(body.contains(#""id":"cooling""#) && body.contains(#""source":"rules.yaml:2""#), "\(body)")
            }
            try await client.execute(uri: "/api/explain?rule=cooling", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains(#""id":"cooling""#))
            }
            try await client.execute(uri: "/api/explain?rule=nope", method: .get) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: "/api/commands", method: .get) { response in
                #expect(
                    String(buffer: response.body)
                        == #"[{"ts":1000,"topic":"actuators/lab/fan/set","state":"on","rule":"cooling","reason":"value 31 above 30"}]"#
                )
            }
        }
    }

    @Test func metricsAreTheRegistrysWithHelpTexts() async throws {
        try await Self.withRoutes(try Self.model()) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
                let body = String(buffer: response.body)
                #expect(body.contains("sensor_pipeline_readings_received_total 3"), "\(body)")
                #expect(body.contains("# HELP sensor_pipeline_readings_received_total"), "\(body)")
            }
        }
    }
}
