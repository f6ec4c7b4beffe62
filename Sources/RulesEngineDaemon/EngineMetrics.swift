import CoreMetrics
import Dispatch
import Rules
import Synchronization

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
    let actionsHeldBack: Counter

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
        actionsHeldBack = Counter(label: "sensor_pipeline_actions_held_back_total", factory: factory)
        transitions = TransitionCounters(factory: factory)
    }

    /// Each family's `# HELP` text, by name (swift-metrics has no place for one; `/metrics` adds them).
    public static let helpTexts: [String: String] = [
        "sensor_pipeline_readings_received_total": "Messages the engine received (readings and actuator states).",
        "sensor_pipeline_readings_evaluated_total": "Readings that reached at least one rule instance.",
        "sensor_pipeline_readings_rejected_total":
            "Readings a rule could not use, by reason (one per rule that could not use it).",
        "sensor_pipeline_readings_lost_total": "Readings missing from a sensor's seq (lost before the engine).",
        "sensor_pipeline_readings_duplicate_total": "Readings dropped because their seq was already seen.",
        "sensor_pipeline_rule_transitions_total": "Rule instances that fired or cleared, by rule and transition.",
        "sensor_pipeline_rule_flapping_total": "Rule instances that started or stopped flapping, by rule.",
        "sensor_pipeline_rule_transitions_limited_total": "Transitions that max_transitions held back, by rule.",
        "sensor_pipeline_rule_transitions_held_total":
            "Holds of a transition a rule wanted, by rule and the setting that held it (min_off, min_on, cooldown, "
            + "max_transitions), counted when the hold starts.",
        "sensor_pipeline_actions_total":
            "Actions by handler and outcome (sent, failed, or superseded: a held-back command replaced by a newer one).",
        "sensor_pipeline_actions_held_back_total":
            "Commands held back because --max-unacknowledged-commands were waiting for the broker's acknowledgement.",
        "sensor_pipeline_evaluation_duration_seconds": "Time to evaluate one reading.",
        "sensor_pipeline_mqtt_connected": "1 while connected to the broker, 0 otherwise.",
        "sensor_pipeline_mqtt_reconnects_total": "Connections to the broker after the first.",
        "sensor_pipeline_mqtt_dropped_messages_total": "Messages dropped by a full subscription buffer.",
        "sensor_pipeline_rules_loaded": "Rules in effect.",
        "sensor_pipeline_rules_reloads_total": "Rule reloads after the start, by outcome (applied, unchanged, failed).",
        "sensor_pipeline_rules_last_reload_success": "1 when the last load or reload succeeded, 0 when it failed.",
        "sensor_pipeline_rules_last_reload_timestamp_seconds": "When the last load or reload was tried (Unix seconds).",
        "sensor_pipeline_alertmanager_posts_total": "Posts of alerts to Alertmanager, by outcome (sent or failed).",
    ]

    /// Metrics that go nowhere (tests, tools that do not serve them).
    public static let discarded = EngineMetrics(factory: NOOPMetricsHandler.instance)

    func rejected(_ reason: String) {
        Counter(label: "sensor_pipeline_readings_rejected_total", dimensions: [("reason", reason)], factory: factory)
            .increment()
    }

    /// `sensor_pipeline_rule_transitions_total`, by rule and transition.
    let transitions: TransitionCounters

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

    /// A transition a rule wanted, held back by `setting` (counted when the hold starts).
    func held(rule: String, by setting: String) {
        Counter(
            label: "sensor_pipeline_rule_transitions_held_total",
            dimensions: [("rule", rule), ("held_by", setting)],
            factory: factory
        ).increment()
    }

    func reload(_ outcome: String) {
        Counter(label: "sensor_pipeline_rules_reloads_total", dimensions: [("outcome", outcome)], factory: factory)
            .increment()
    }

    /// The counter of one handler's actions with one outcome (`sent`, `failed`, `superseded`); made once per
    /// handler and outcome, not per action.
    func actionCounter(handler: String, outcome: String) -> Counter {
        Counter(
            label: "sensor_pipeline_actions_total",
            dimensions: [("handler", handler), ("outcome", outcome)],
            factory: factory
        )
    }

    /// Monotonic nanoseconds, for timing an evaluation.
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}

/// The transition counters, made once per rule and kept: a transition increments one without a registry
/// lookup.
final class TransitionCounters: Sendable {
    private let factory: any MetricsFactory
    private let counters = Mutex<[String: (fire: Counter, clear: Counter)]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func increment(rule: String, transition: TransitionKind) {
        let pair = counters.withLock { counters in
            if let pair = counters[rule] { return pair }
            let counter = { (kind: TransitionKind) in
                Counter(
                    label: "sensor_pipeline_rule_transitions_total",
                    dimensions: [("rule", rule), ("transition", kind.rawValue)],
                    factory: self.factory
                )
            }
            let pair = (fire: counter(.fire), clear: counter(.clear))
            counters[rule] = pair
            return pair
        }
        (transition == .fire ? pair.fire : pair.clear).increment()
    }
}
