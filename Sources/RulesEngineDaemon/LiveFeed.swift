import FileFormats
import Rules
import Synchronization

/// What the live page (`GET /`, `GET /events`) shows besides rule instances: recent readings per sensor,
/// actuator states and the last commands. Fed from the engine's message callback, so it stays cheap:
/// one lock per message, and a reading is decoded only when its sensor's last sample is a second old.
public final class LiveFeed: Sendable {
    /// Sensors shown (the first seen); points kept per sensor; least time between two points.
    public static let maximumSensors = 300
    public static let pointsPerSensor = 120
    public static let sampleIntervalMilliseconds: Int64 = 1_000
    static let commandsKept = 25
    /// Phase changes kept per instance (the page draws the last two minutes of them).
    static let phasesKept = 40

    struct Sensor {
        var times: [Int64] = []
        var values: [Double] = []
        var lastText: String?
        var lastSampleAt = Int64.min
        /// The payload's `unit`, when it names one.
        var unit: String?
    }

    struct Command {
        var timestamp: Int64
        var topic: String
        var state: String
        var ruleID: String
        var reason: String
    }

    struct State {
        var sensors: [String: Sensor] = [:]
        var actuators: [String: (state: String, at: Int64)] = [:]
        var commands: [Command] = []
        /// Per instance (`rule` + labels), its phase changes: time and `inactive`/`pending`/`firing`.
        var phases: [String: [(time: Int64, phase: String)]] = [:]

        mutating func record(_ phase: String, at time: Int64, for key: String) {
            var list = phases[key] ?? []
            guard list.last?.phase != phase else { return }
            list.append((time, phase))
            if list.count > LiveFeed.phasesKept { list.removeFirst(list.count - LiveFeed.phasesKept) }
            phases[key] = list
        }
    }

    private let state = Mutex(State())
    /// Units by topic from device files (`run --devices`), for payloads that name none.
    let knownUnits: [String: String]

    public init(units: [String: String] = [:]) {
        knownUnits = units
    }

    /// A message the engine received: an actuator's state report or a reading.
    func observe(topic: String, payload: [UInt8], isState: Bool, at time: Int64) {
        if isState {
            let reported = LiveFeed.stateText(payload)
            state.withLock { $0.actuators[topic] = (reported, time) }
            return
        }
        let due = state.withLock { state -> Bool in
            if let sensor = state.sensors[topic] {
                return time - sensor.lastSampleAt >= LiveFeed.sampleIntervalMilliseconds
            }
            return state.sensors.count < LiveFeed.maximumSensors
        }
        guard due else { return }
        var number: Double?
        var text: String?
        var unit: String?
        switch JSONValue(parsing: payload) {
        case .number(let value)?: number = value
        case .object(let pairs)?:
            if case .string(let name)? = pairs.first(where: { $0.key == "unit" })?.value {
                unit = String(name.prefix(12))
            }
            switch pairs.first(where: { $0.key == "value" })?.value {
            case .number(let value)?: number = value
            case .string(let value)?: text = value
            default: return
            }
        case .string(let value)?: text = value
        case nil: text = String(decoding: payload.prefix(40), as: UTF8.self)
        default: return
        }
        state.withLock { state in
            var sensor = state.sensors[topic] ?? Sensor()
            sensor.lastSampleAt = time
            if let unit { sensor.unit = unit }
            if let number {
                sensor.times.append(time)
                sensor.values.append(number)
                if sensor.times.count > LiveFeed.pointsPerSensor {
                    sensor.times.removeFirst()
                    sensor.values.removeFirst()
                }
                sensor.lastText = nil
            } else {
                sensor.lastText = text
            }
            state.sensors[topic] = sensor
        }
    }

    /// A transition the engine made: where the page's state timelines come from.
    func transition(_ record: TransitionRecord) {
        let key = LiveFeed.key(record.ruleID, record.labels)
        state.withLock { $0.record(record.transition == .fire ? "firing" : "inactive", at: record.timestamp, for: key) }
    }

    static func key(_ ruleID: String, _ labels: [Label]) -> String {
        ([ruleID] + labels.map(\.description)).joined(separator: "|")
    }

    /// A command the engine decided (a `publish` action).
    func command(_ action: FiredAction) {
        guard case .publish(let topic, let payload, _, _) = action.action else { return }
        let shown: String
        if case .string(let text)? = payload["state"] { shown = text } else { shown = payload.jsonText }
        state.withLock { state in
            state.commands.append(
                Command(
                    timestamp: action.timestamp,
                    topic: topic,
                    state: shown,
                    ruleID: action.ruleID,
                    reason: action.reason
                )
            )
            if state.commands.count > LiveFeed.commandsKept { state.commands.removeFirst() }
        }
    }

    /// Everything the page draws, as one JSON object; `brokerProblem` is why the engine is not connected
    /// (nil when it is).
    func snapshot(
        instances: [InstanceReport],
        ruleSet: RuleSet? = nil,
        brokerProblem: String? = nil,
        now: Int64
    ) -> JSONValue {
        // Pending is not a transition: it is read off the instances (from when it began), and so is its end.
        let state = self.state.withLock { state in
            for instance in instances {
                let key = LiveFeed.key(instance.ruleID, instance.labels)
                switch instance.state {
                case .pending: state.record("pending", at: instance.since ?? now, for: key)
                case .inactive where state.phases[key]?.last?.phase == "pending":
                    state.record("inactive", at: now, for: key)
                default: break
                }
            }
            return state
        }
        let sensors = state.sensors.sorted { $0.key < $1.key }.map { topic, sensor -> JSONValue in
            .object([
                ("topic", .string(topic)),
                ("unit", (sensor.unit ?? knownUnits[topic]).map(JSONValue.string) ?? .null),
                ("last", sensor.lastText.map(JSONValue.string) ?? sensor.values.last.map(JSONValue.number) ?? .null),
                ("times", .array(sensor.times.map { .number(Double($0)) })),
                ("values", .array(sensor.values.map(JSONValue.number))),
            ])
        }
        let actuators = state.actuators.sorted { $0.key < $1.key }.map { topic, reported -> JSONValue in
            .object([
                ("topic", .string(topic)), ("state", .string(reported.state)), ("at", .number(Double(reported.at))),
            ])
        }
        let commands = state.commands.reversed().map { command -> JSONValue in
            .object([
                ("ts", .number(Double(command.timestamp))), ("topic", .string(command.topic)),
                ("state", .string(command.state)), ("rule", .string(command.ruleID)),
                ("reason", .string(command.reason)),
            ])
        }
        return .object([
            ("now", .number(Double(now))),
            (
                "broker",
                .object([
                    ("connected", .bool(brokerProblem == nil)),
                    ("problem", brokerProblem.map(JSONValue.string) ?? .null),
                ])
            ),
            ("sensors", .array(sensors)),
            (
                "instances",
                .array(
                    instances.map { instance in
                        let key = LiveFeed.key(instance.ruleID, instance.labels)
                        let phases = (state.phases[key] ?? []).map {
                            JSONValue.array([.number(Double($0.time)), .string($0.phase)])
                        }
                        return instance.json.setting("key", to: .string(key))
                            .setting("phases", to: .array(phases))
                            .setting(
                                "thresholds",
                                to: .array(ruleSet.map { LiveFeed.thresholds(of: instance, in: $0) } ?? [])
                            )
                    }
                )
            ),
            ("actuators", .array(actuators)),
            ("commands", .array(commands)),
        ])
    }

    /// What the page draws on a sensor's chart for an instance: per concrete topic the instance reads, the
    /// threshold, the clear level and the window, as in the rule.
    static func thresholds(of instance: InstanceReport, in ruleSet: RuleSet) -> [JSONValue] {
        guard let rule = ruleSet.rule(withID: instance.ruleID) else { return [] }
        let readings: [(topic: String, leaf: Rule.Leaf)]
        if instance.conditions.isEmpty {
            guard let topic = concreteTopic(rule.leaves[0].topic, labels: instance.labels) else { return [] }
            readings = [(topic, rule.leaves[0])]
        } else {
            readings = instance.conditions.map { condition in
                (condition.topic, rule.leaves[condition.isMember ? 0 : min(condition.position, rule.leaves.count - 1)])
            }
        }
        return readings.map { topic, leaf in
            .object([
                ("topic", .string(topic)), leaf.condition.keyAndValue,
                ("clear", leaf.clear.map(JSONValue.number) ?? .null),
                ("window", leaf.window.map { .string($0.description) } ?? .null),
            ])
        }
    }

    /// The topic a pattern reads for these captured values (nil with a `+` or `#` in it).
    static func concreteTopic(_ pattern: TopicPattern, labels: [Label]) -> String? {
        var parts: [String] = []
        for level in pattern.levels {
            switch level {
            case .literal(let text): parts.append(text)
            case .capture(let name):
                guard let value = labels.first(where: { $0.name == name })?.value else { return nil }
                parts.append(value)
            case .anyLevel, .remainingLevels: return nil
            }
        }
        return parts.joined(separator: "/")
    }

    static func stateText(_ payload: [UInt8]) -> String {
        ActuatorState.name(in: payload).map { String($0.prefix(40)) }
            ?? String(decoding: payload.prefix(40), as: UTF8.self)
    }
}
