import CoreMetrics
import Dispatch

/// The engine's metrics, made by one factory (the engine's own Prometheus registry in `rules-engine run`).
/// `docs/observability.md` lists every name with its meaning.
public struct EngineMetrics: Sendable {
    let factory: any MetricsFactory
    let readingsReceived: Counter
    let readingsEvaluated: Counter
    let readingsLost: Counter
    let duplicates: Counter
    let evaluationDuration: CoreMetrics.Timer
    let connected: Gauge
    let reconnects: Counter
    let droppedMessages: Counter
    let rulesLoaded: Gauge
    let lastReloadSuccess: Gauge
    let lastReloadTime: Gauge

    public init(factory: any MetricsFactory) {
        self.factory = factory
        readingsReceived = Counter(label: "sensor_pipeline_readings_received_total", factory: factory)
        readingsEvaluated = Counter(label: "sensor_pipeline_readings_evaluated_total", factory: factory)
        readingsLost = Counter(label: "sensor_pipeline_readings_lost_total", factory: factory)
        duplicates = Counter(label: "sensor_pipeline_readings_duplicate_total", factory: factory)
        evaluationDuration = CoreMetrics.Timer(label: "sensor_pipeline_evaluation_duration_seconds", factory: factory)
        connected = Gauge(label: "sensor_pipeline_mqtt_connected", factory: factory)
        reconnects = Counter(label: "sensor_pipeline_mqtt_reconnects_total", factory: factory)
        droppedMessages = Counter(label: "sensor_pipeline_mqtt_dropped_messages_total", factory: factory)
        rulesLoaded = Gauge(label: "sensor_pipeline_rules_loaded", factory: factory)
        lastReloadSuccess = Gauge(label: "sensor_pipeline_rules_last_reload_success", factory: factory)
        lastReloadTime = Gauge(label: "sensor_pipeline_rules_last_reload_timestamp_seconds", factory: factory)
    }

    /// Metrics that go nowhere (tests, tools that do not serve them).
    public static let discarded = EngineMetrics(factory: NOOPMetricsHandler.instance)

    func rejected(_ reason: String) {
        Counter(label: "sensor_pipeline_readings_rejected_total", dimensions: [("reason", reason)], factory: factory)
            .increment()
    }

    func transition(rule: String, kind: String) {
        Counter(
            label: "sensor_pipeline_rule_transitions_total",
            dimensions: [("rule", rule), ("transition", kind)],
            factory: factory
        ).increment()
    }

    /// An instance started (`started`) or stopped flapping.
    func flapping(rule: String, started: Bool) {
        Counter(
            label: "sensor_pipeline_rule_flapping_total",
            dimensions: [("rule", rule), ("change", started ? "started" : "stopped")],
            factory: factory
        ).increment()
    }

    /// A transition `max_transitions` held back.
    func limited(rule: String) {
        Counter(label: "sensor_pipeline_rule_transitions_limited_total", dimensions: [("rule", rule)], factory: factory)
            .increment()
    }

    func reload(_ outcome: String) {
        Counter(label: "sensor_pipeline_rules_reloads_total", dimensions: [("outcome", outcome)], factory: factory)
            .increment()
    }

    func action(handler: String, succeeded: Bool) {
        Counter(
            label: "sensor_pipeline_actions_total",
            dimensions: [("handler", handler), ("outcome", succeeded ? "sent" : "failed")],
            factory: factory
        ).increment()
    }

    /// Monotonic nanoseconds, for timing an evaluation.
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}
