import FileFormats
import Hummingbird
import Logging
import Prometheus
import Rules
import RulesEngineDaemon
import ServiceLifecycle
import Synchronization

/// `rules-engine run --http HOST:PORT`: metrics, health and the engine's state over HTTP.
///
/// - `GET /metrics` (and `HEAD`): Prometheus text format, from the engine's own registry, with help texts.
/// - `GET /healthz`: 200 `ok` when connected to the broker with rules loaded, 503 and the reason otherwise.
/// - `GET /api/instances[?rule=ID]`: every rule instance as JSON (labels, state, last value, since,
///   the reason of the last transition, the next timer).
/// - `GET /api/commands`: the last commands the engine sent, newest first.
/// - `GET /api/rules`: every rule with its source `file:line`.
/// - `GET /api/explain?rule=ID`: one rule as `/api/rules` shows it, with its YAML as written in its file.
/// - `GET /`: the live page; `GET /events`: what it draws, as server-sent events once a second.
public enum EngineHTTPServer {
    /// The HTTP service for `engine`; run it in the engine's service group.
    public static func make(
        engine: some EngineReadModel,
        registry: PrometheusCollectorRegistry,
        host: String,
        port: Int,
        logger: Logger,
        onRunning: @escaping @Sendable () -> Void
    ) -> some Service {
        Application(
            router: router(engine: engine, registry: registry),
            configuration: .init(address: .hostname(host, port: port), serverName: "rules-engine"),
            onServerRunning: { channel in
                logger.info("http listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")"])
                onRunning()
            },
            logger: logger
        )
    }

    /// The routes, on any read model (tests drive them in process).
    public static func router(
        engine: some EngineReadModel,
        registry: PrometheusCollectorRegistry
    ) -> Router<
        BasicRequestContext
    > {
        let router = Router()
        let metrics = { @Sendable (_: Request, _: BasicRequestContext) -> Response in
            var buffer: [UInt8] = []
            buffer.reserveCapacity(16 * 1024)
            registry.emit(into: &buffer)
            let exposition = MetricsExposition.addingHelp(to: buffer, helpTexts: EngineMetrics.helpTexts)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: exposition))
            )
        }
        router.get("/metrics", use: metrics)
        router.head("/metrics", use: metrics)
        router.get("/healthz") { _, _ -> Response in
            let problem = engine.healthProblem
            return Response(
                status: problem == nil ? .ok : .serviceUnavailable,
                headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: (problem ?? "ok") + "\n"))
            )
        }
        router.get("/api/instances") { request, _ -> Response in
            let ruleID = request.uri.queryParameters.get("rule")
            return json(.array(engine.instanceReports(ruleID: ruleID).map(\.json)))
        }
        router.get("/api/commands") { _, _ -> Response in
            // The last commands the engine sent, newest first (what the live page and pipeline-monitor list).
            json(engine.liveSnapshot()["commands"] ?? .array([]))
        }
        router.get("/api/rules") { _, _ -> Response in
            json(.array(engine.ruleSet.rules.map(ruleJSON)))
        }
        router.get("/api/explain") { request, _ -> Response in
            guard let id = request.uri.queryParameters.get("rule"), let rule = engine.ruleSet.rule(withID: id) else {
                return Response(
                    status: .notFound,
                    headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(string: #"{"error":"no such rule"}"#))
                )
            }
            return json(
                explanation(of: rule)
            )
        }
        router.get("/") { request, _ -> Response in
            let explained = request.uri.queryParameters.get("rule").flatMap { engine.ruleSet.rule(withID: $0) }.map {
                explanation(of: $0)
            }
            return Response(
                status: .ok,
                headers: [.contentType: "text/html; charset=utf-8"],
                body: .init(
                    byteBuffer: ByteBuffer(
                        string: LivePage.html(initial: engine.liveSnapshot(), explained: explained ?? .null)
                    )
                )
            )
        }
        router.get("/events") { _, _ -> Response in
            // Server-sent events: the whole picture once a second (small: sensors and commands are capped).
            // Produced in the response writer's own task; it ends at the server's graceful shutdown, so
            // SIGTERM never waits for a browser to leave.
            let ticks = EventTicks()
            let events = AsyncStream<ByteBuffer> {
                guard await ticks.next() else { return nil }
                return ByteBuffer(string: "event: snapshot\ndata: \(engine.liveSnapshot().jsonText)\n\n")
            }
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: .init(asyncSequence: events)
            )
        }
        return router
    }

    /// A Prometheus metrics factory for `EngineMetrics`, with evaluation-time buckets in microseconds.
    public static func metricsFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["sensor_pipeline_evaluation_duration_seconds"] = [
            .microseconds(1), .microseconds(2), .microseconds(5), .microseconds(10), .microseconds(25),
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(1000), .milliseconds(10),
        ]
        return factory
    }

    static func json(_ value: JSONValue) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: value.jsonText))
        )
    }

    /// What `/api/explain` answers: the rule as `/api/rules` shows it, with its YAML as written in its file.
    static func explanation(of rule: Rule) -> JSONValue {
        ruleJSON(rule).setting("yaml", to: RuleSourceText.block(of: rule).map(JSONValue.string) ?? .null)
    }

    static func ruleJSON(_ rule: Rule) -> JSONValue {
        func milliseconds(_ value: Int64?) -> JSONValue { value.map { .string(RuleDuration.format($0)) } ?? .null }
        let condition = rule.condition.keyAndValue
        // What every rule has, whatever its condition: timing, schedule, flapping and its actions.
        let behaviour: [(String, JSONValue)] = [
            ("for", milliseconds(rule.forMilliseconds)),
            ("cooldown", milliseconds(rule.cooldownMilliseconds)),
            ("min_on", milliseconds(rule.minOnMilliseconds)),
            ("keep_firing_for", milliseconds(rule.keepFiringForMilliseconds)),
            (
                "max_transitions",
                rule.maxTransitions.map {
                    .string("\($0.count) in \(RuleDuration.format($0.windowMilliseconds))")
                } ?? .null
            ),
            ("active", rule.schedule.map { .string($0.description) } ?? .null),
            ("outside_active", rule.schedule == nil ? .null : .string(rule.outsideActive.rawValue)),
            (
                "flapping",
                rule.flapping.map {
                    .object([
                        ("history", .number(Double($0.history))), ("low", .number($0.lowPercent)),
                        ("high", .number($0.highPercent)), ("state", .string($0.state.rawValue)),
                    ])
                } ?? .null
            ),
            ("severity", .string(rule.severity.rawValue)),
            ("on_unknown", .string(rule.onUnknown.rawValue)),
            ("on_fire", .array(rule.onFire.map(actionJSON))),
            ("on_clear", .array(rule.onClear.map(actionJSON))),
            ("source", .string("\(rule.location.file):\(rule.location.line)")),
        ]
        guard rule.isSingleCondition else {
            // A combination or a group: the whole condition in one line, and each condition on a topic.
            return .object(
                [
                    ("id", .string(rule.id)),
                    ("description", rule.description.map(JSONValue.string) ?? .null),
                    ("condition", .string(rule.conditionText)),
                    ("topics", .array(rule.leaves.map { .string($0.topic.description) })),
                ] + behaviour
            )
        }
        return .object(
            [
                ("id", .string(rule.id)),
                ("description", rule.description.map(JSONValue.string) ?? .null),
                ("topic", .string(rule.topic.description)),
                ("field", .string(rule.field.joined(separator: "."))),
                ("window", rule.leaves[0].window.map { .string($0.description) } ?? .null),
                condition,
                ("clear", rule.clear.map(JSONValue.number) ?? .null),
                ("stale", milliseconds(rule.staleMilliseconds)),
            ] + behaviour
        )
    }

    /// An action as the rule file states it (templates unfilled), with its `file:line`.
    static func actionJSON(_ action: Action) -> JSONValue {
        let source: (String, JSONValue) = ("source", .string("\(action.location.file):\(action.location.line)"))
        switch action.handler {
        case .publish(let topic, let payload, let qos, let retain):
            return .object([
                ("publish", .string(topic.description)), ("payload", payload.map(payloadJSON) ?? .null),
                ("qos", .number(Double(qos))), ("retain", .bool(retain)), source,
            ])
        case .log(let message):
            return .object([("log", .string(message.description)), source])
        case .command(let arguments, let timeout):
            return .object([
                ("command", .array(arguments.map { .string($0.description) })),
                ("timeout", .string(RuleDuration.format(timeout))), source,
            ])
        case .webhook(let url, let body, let timeout):
            return .object([
                ("webhook", .string(url.description)), ("body", body.map(payloadJSON) ?? .null),
                ("timeout", .string(RuleDuration.format(timeout))), source,
            ])
        }
    }

    static func payloadJSON(_ payload: PayloadTemplate) -> JSONValue {
        switch payload {
        case .literal(let value): value
        case .string(let template): .string(template.description)
        case .array(let items): .array(items.map(payloadJSON))
        case .object(let keys, let values): .object(zip(keys, values.map(payloadJSON)).map { (key: $0, value: $1) })
        }
    }

}

/// The pace of one `/events` stream: at once, then once a second until graceful shutdown or cancellation.
private final class EventTicks: Sendable {
    private let started = Mutex(false)

    /// Waits for the next tick; false when the stream should end.
    func next() async -> Bool {
        let first = started.withLock { started in
            defer { started = true }
            return !started
        }
        if first { return !Task.isShuttingDownGracefully }
        do {
            try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        } catch {
            return false
        }
        return !Task.isShuttingDownGracefully && !Task.isCancelled
    }
}
