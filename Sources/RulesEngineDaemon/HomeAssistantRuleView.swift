import FileFormats
import Logging
import MQTT
import Rules
import ServiceLifecycle
import Synchronization

/// `rules-engine run --ha-discovery`: every rule instance appears in Home Assistant as a `binary_sensor` of
/// device class `problem` (on while the instance fires), next to the simulator's devices. Its discovery config
/// is published retained under `homeassistant/binary_sensor/…/config` when the instance first exists, its
/// state (with the reason, value and since as attributes) retained on its own topic whenever it changes, and
/// its availability follows the engine's presence topic. A rule a reload removed takes its entities with it
/// (an empty retained config is how Home Assistant is told).
public final class HomeAssistantRuleView: Service, TransitionObserver {
    /// One retained message.
    public struct Message: Sendable, Equatable {
        public var topic: String
        public var payload: String
    }

    let logger: Logger
    let prefix: String
    let scanInterval: Duration
    private let engine = Mutex<RulesEngineService?>(nil)
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    public init(
        logger: Logger,
        prefix: String = "homeassistant",
        scanInterval: Duration = .seconds(5)
    ) {
        self.logger = logger
        self.prefix = prefix
        self.scanInterval = scanInterval
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        wake.yield()
    }

    /// The engine whose instances are shown (through its own MQTT client); set it before `run()`.
    public func follow(_ engine: RulesEngineService) {
        self.engine.withLock { $0 = engine }
    }

    public func observe(_ transition: TransitionRecord) {
        wake.yield()
    }

    public func run() async throws {
        var published: [String: Message] = [:]  // the last retained message per topic
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [wake, scanInterval] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: scanInterval)
                    wake.yield()
                }
            }
            await withGracefulShutdownHandler {
                for await _ in wakeups {
                    guard let engine = engine.withLock({ $0 }), engine.client.isConnected else { continue }
                    let client = engine.client
                    let messages = Self.messages(
                        for: engine.instanceReports(),
                        ruleSet: engine.ruleSet,
                        engineID: client.clientID,
                        prefix: prefix
                    )
                    var current: [String: Message] = [:]
                    for message in messages { current[message.topic] = message }
                    // Gone (a rule removed or changed by a reload): an empty retained message removes each.
                    let gone = published.keys.filter { current[$0] == nil }.sorted().map {
                        Message(topic: $0, payload: "")
                    }
                    for message in messages.filter({ published[$0.topic] != $0 }) + gone {
                        do {
                            try await client.publish(
                                message.payload,
                                to: message.topic,
                                qos: .atLeastOnce,
                                retain: true
                            )
                            published[message.topic] = message.payload.isEmpty ? nil : message
                        } catch {
                            logger.debug("Home Assistant view: publish failed", metadata: ["error": "\(error)"])
                            break
                        }
                    }
                }
            } onGracefulShutdown: { [wake] in
                wake.finish()
            }
            group.cancelAll()
        }
    }

    /// The discovery config and the state message of every instance, configs first.
    public static func messages(
        for instances: [InstanceReport],
        ruleSet: RuleSet,
        engineID: String,
        prefix: String = "homeassistant"
    ) -> [Message] {
        let node = "sensor_pipeline_" + objectID(engineID)
        let device = JSONValue.object([
            ("identifiers", .array([.string("sensor-pipeline-engine-\(engineID)")])),
            ("name", .string("rules engine \(engineID)")),
            ("manufacturer", .string("sensor-pipeline")),
            ("model", .string("rules engine")),
        ])
        var configs: [Message] = []
        var states: [Message] = []
        for instance in instances {
            guard let rule = ruleSet.rule(withID: instance.ruleID) else { continue }
            let key = ([instance.ruleID] + instance.labels.map(\.value)).joined(separator: " ")
            // Two keys that read the same once sanitised (`a.b`, `a_b`) still get their own ids.
            let exact = key + "|" + instance.labels.map(\.description).joined(separator: ",")
            let object = objectID(key) + "_" + Rule.hash(ofFingerprint: exact).prefix(8)
            let stateTopic = "pipeline/engine/\(engineID)/instances/\(object)"
            let config = JSONValue.object([
                ("name", .string(key)),
                ("unique_id", .string("sensor-pipeline-\(engineID)-\(object)")),
                ("object_id", .string(object)),
                ("device", device),
                ("device_class", .string("problem")),
                ("state_topic", .string(stateTopic)),
                ("value_template", .string("{{ value_json.state }}")),
                ("payload_on", .string("ON")),
                ("payload_off", .string("OFF")),
                ("json_attributes_topic", .string(stateTopic)),
                ("availability_topic", .string("pipeline/engine/\(engineID)/status")),
                ("payload_available", .string("online")),
                ("payload_not_available", .string("offline")),
            ])
            configs.append(Message(topic: "\(prefix)/binary_sensor/\(node)/\(object)/config", payload: config.jsonText))
            let state = JSONValue.object([
                ("state", .string(instance.state == .firing ? "ON" : "OFF")),
                ("phase", .string(instance.state.rawValue)),
                ("rule", .string(rule.id)),
                ("labels", .object(instance.labels.map { (key: $0.name, value: .string($0.value)) })),
                ("severity", .string(rule.severity.rawValue)),
                ("description", rule.description.map(JSONValue.string) ?? .null),
                ("reason", instance.lastReason.map(JSONValue.string) ?? .null),
                ("value", instance.lastValue ?? .null),
                ("since", instance.since.map { .string(Timestamp.rfc3339($0)) } ?? .null),
            ])
            states.append(Message(topic: stateTopic, payload: state.jsonText))
        }
        return configs + states
    }

    /// Letters, digits, `_` and `-` only (Home Assistant's node and object ids).
    static func objectID(_ text: String) -> String {
        String(text.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") ? $0 : "_" })
    }
}
