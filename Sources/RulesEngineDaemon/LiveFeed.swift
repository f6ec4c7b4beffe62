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

    struct Sensor {
        var times: [Int64] = []
        var values: [Double] = []
        var lastText: String?
        var lastSampleAt = Int64.min
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
    }

    private let state = Mutex(State())

    public init() {}

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
        switch JSONValue(parsing: payload) {
        case .number(let value)?: number = value
        case .object(let pairs)?:
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
    func snapshot(instances: [InstanceReport], brokerProblem: String? = nil, now: Int64) -> JSONValue {
        let state = self.state.withLock { $0 }
        let sensors = state.sensors.sorted { $0.key < $1.key }.map { topic, sensor -> JSONValue in
            .object([
                ("topic", .string(topic)),
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
            ("instances", .array(instances.map(\.json))),
            ("actuators", .array(actuators)),
            ("commands", .array(commands)),
        ])
    }

    static func stateText(_ payload: [UInt8]) -> String {
        ActuatorState.name(in: payload).map { String($0.prefix(40)) }
            ?? String(decoding: payload.prefix(40), as: UTF8.self)
    }
}
