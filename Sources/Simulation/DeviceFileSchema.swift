import FileFormats

/// The JSON Schema (draft 2020-12) of device files, for editors (`rules-engine schema devices`): the keys
/// `DeviceLoader` accepts, and no other.
public enum DeviceFileSchema {
    /// The schema's `$id` (the file is committed as `docs/schema/devices.schema.json`).
    public static let identifier = "urn:sensor-pipeline:schema:devices"

    public static var document: JSONValue {
        allowingSharedDefinitions(
            JSONSchema.document(
                id: identifier,
                title: "sensor-pipeline device file",
                root: JSONSchema.object(
                    "A device file: simulated devices with sensors and actuators (docs/devices.md).",
                    [("devices", JSONSchema.array("The devices of this file.", of: JSONSchema.reference("device")))],
                    required: ["devices"]
                ),
                definitions: [
                    ("device", device),
                    ("sensor", sensor),
                    ("signal", signal),
                    ("actuator", actuator),
                    ("effect", effect),
                    ("duration", JSONSchema.durationDefinition),
                ]
            )
        )
    }

    /// Every mapping also takes `x-` keys and the merge key `<<` (shared definitions, as the loader reads them).
    static func allowingSharedDefinitions(_ schema: JSONValue) -> JSONValue {
        switch schema {
        case .object(let pairs):
            var result = pairs.map { ($0.key, allowingSharedDefinitions($0.value)) }
            if pairs.contains(where: { $0.key == "additionalProperties" && $0.value == .bool(false) }) {
                result.insert(("patternProperties", .object([("^(x-.*|<<)$", .object([]))])), at: result.count - 1)
            }
            return .object(result.map { (key: $0.0, value: $0.1) })
        case .array(let items):
            return .array(items.map(allowingSharedDefinitions))
        default:
            return schema
        }
    }

    static func properties(_ keys: [String], _ schemas: [String: JSONValue]) -> [(String, JSONValue)] {
        keys.map { key in
            guard let schema = schemas[key] else { preconditionFailure("no schema for the device key '\(key)'") }
            return (key, schema)
        }
    }

    static var device: JSONValue {
        JSONSchema.object(
            "A device: its id and its sensors and actuators.",
            properties(
                DeviceLoader.deviceKeys,
                [
                    "id": JSONSchema.text("The device id ({device} in topics): letters, digits, '_', '.' and '-'."),
                    "description": JSONSchema.text("What the device is."),
                    "sensors": JSONSchema.array("Its sensors.", of: JSONSchema.reference("sensor")),
                    "actuators": JSONSchema.array("Its actuators.", of: JSONSchema.reference("actuator")),
                ]
            ),
            required: ["id"]
        )
    }

    static var sensor: JSONValue {
        let number = JSONValue.object([("type", .string("number"))])
        return JSONSchema.object(
            "A sensor: what it publishes, how often, and the signal it follows.",
            properties(
                DeviceLoader.sensorKeys,
                [
                    "name": JSONSchema.text("The sensor's name (default topic sensors/{device}/NAME)."),
                    "topic": JSONSchema.text("The topic it publishes to; {device} is the device id."),
                    "unit": JSONSchema.text("The unit shown with its values."),
                    "interval": JSONSchema.reference("duration", "Time between readings (default 5s)."),
                    "signal": JSONSchema.reference("signal"),
                    "noise": JSONSchema.number(
                        "Gaussian noise added to each reading (standard deviation).",
                        minimum: 0
                    ),
                    "spikes": JSONSchema.object(
                        "Occasional spikes.",
                        [
                            ("probability", JSONSchema.number("Chance per reading.", minimum: 0, maximum: 1)),
                            ("size", JSONSchema.number("How far a spike jumps.")),
                        ]
                    ),
                    "dropouts": JSONSchema.object(
                        "Occasional silences.",
                        [
                            ("probability", JSONSchema.number("Chance per reading.", minimum: 0, maximum: 1)),
                            ("duration", JSONSchema.reference("duration", "How long a dropout lasts.")),
                        ]
                    ),
                    "bounds": JSONSchema.array(
                        "[low, high]: values stay within.",
                        of: number,
                        minItems: 2,
                        maxItems: 2
                    ),
                    "payload": JSONSchema.anyOf(
                        "The payload's shape: json (default), number, {key: NAME} or {states: [...]}.",
                        [
                            JSONSchema.oneOf("json or number.", ["json", "number"]),
                            JSONSchema.object(
                                "A JSON object with the value under this key, or one of these states.",
                                [
                                    ("key", JSONSchema.text("The key of the value.")),
                                    (
                                        "states",
                                        JSONSchema.array("State names.", of: JSONSchema.text("A state."), minItems: 1)
                                    ),
                                ]
                            ),
                        ]
                    ),
                    "effects": JSONSchema.array(
                        "Effects on other sensors of the device.",
                        of: JSONSchema.reference("effect")
                    ),
                ]
            ),
            required: ["name", "signal"]
        )
    }

    static var signal: JSONValue {
        JSONSchema.object(
            "The signal a sensor follows.",
            properties(
                DeviceLoader.signalKeys,
                [
                    "model": JSONSchema.oneOf("The model.", ["constant", "random_walk", "sine", "daily", "steps"]),
                    "value": JSONSchema.number("constant: the value."),
                    "start": JSONSchema.number("random_walk: the first value."),
                    "step": JSONSchema.number("random_walk: the largest step (default 0.1)."),
                    "drift": JSONSchema.number("random_walk: the drift per reading (default 0)."),
                    "mean": JSONSchema.number("sine, daily: the mean."),
                    "amplitude": JSONSchema.number("sine, daily: the amplitude."),
                    "period": JSONSchema.reference("duration", "sine: the period."),
                    "peak_hour": JSONSchema.number(
                        "daily: the hour of the peak (default 14).",
                        minimum: 0,
                        maximum: 24
                    ),
                    "steps": JSONSchema.array(
                        "steps: values from given times on.",
                        of: JSONSchema.object(
                            "A step.",
                            [
                                ("at", JSONSchema.reference("duration", "When, from the start.")),
                                ("value", JSONSchema.number("The value from then on.")),
                            ],
                            required: ["at", "value"]
                        ),
                        minItems: 1
                    ),
                ]
            ),
            required: ["model"]
        )
    }

    static var actuator: JSONValue {
        JSONSchema.object(
            "An actuator: the commands it takes, the states it reports, its effects on sensors.",
            properties(
                DeviceLoader.actuatorKeys,
                [
                    "name": JSONSchema.text("The actuator's name."),
                    "command_topic": JSONSchema.text("Where it takes commands (default actuators/{device}/NAME/set)."),
                    "state_topic": JSONSchema.text(
                        "Where it reports its state (default actuators/{device}/NAME/state)."
                    ),
                    "states": JSONSchema.array("Its states (default [off, on]).", of: JSONSchema.text("A state.")),
                    "initial": JSONSchema.text("Its first state (default the first of states)."),
                    "effects": JSONSchema.array("Effects on the device's sensors.", of: JSONSchema.reference("effect")),
                    "lag": JSONSchema.reference("duration", "Time from a command to the new state."),
                    "fail_probability": JSONSchema.number(
                        "Chance that a command is not applied.",
                        minimum: 0,
                        maximum: 1
                    ),
                ]
            ),
            required: ["name"]
        )
    }

    static var effect: JSONValue {
        JSONSchema.object(
            "An effect on a sensor while the actuator (or the sensor) is in a state.",
            properties(
                DeviceLoader.effectKeys,
                [
                    "sensor": JSONSchema.text("The sensor it acts on."),
                    "when": JSONSchema.text("The state in which it acts (default on)."),
                    "rate": JSONSchema.number("Change per second."),
                    "limit": JSONSchema.number("The value it stops at."),
                    "recover": JSONSchema.number("Change back per second once it stops acting (default 0)."),
                ]
            ),
            required: ["sensor", "rate"]
        )
    }
}
