import FileFormats

/// The JSON Schema (draft 2020-12) of rule files, for editors (`rules-engine schema rules`): it completes the
/// keys `RuleLoader` accepts and fails every other key. `check` stays the judge of what a schema cannot say
/// (placeholders, ids across files, time zones).
public enum RuleFileSchema {
    /// The schema's `$id` (the file is committed as `docs/schema/rules.schema.json`).
    public static let identifier = "urn:sensor-pipeline:schema:rules"

    public static var document: JSONValue {
        JSONSchema.document(
            id: identifier,
            title: "sensor-pipeline rule file",
            root: JSONSchema.object(
                "A rule file: rules that watch sensor topics and act on transitions (docs/rules.md).",
                [
                    (
                        "rules",
                        JSONSchema.array("The rules of this file ([] for none).", of: JSONSchema.reference("rule"))
                    )
                ],
                required: ["rules"]
            ),
            definitions: [
                ("rule", rule),
                ("condition", condition),
                ("leaf", leaf),
                ("combination", combination),
                ("action", action),
                ("duration", JSONSchema.durationDefinition),
            ]
        )
    }

    static var rule: JSONValue {
        var schema = JSONSchema.object(
            "A rule: one condition on a topic (topic + a threshold), or all/any/not of several; its timing and actions.",
            properties(RuleLoader.ruleKeys),
            required: ["id"]
        )
        schema = adding(
            ("anyOf", .array(["topic", "all", "any", "not"].map { .object([("required", .array([.string($0)]))]) })),
            to: schema
        )
        return schema
    }

    static var condition: JSONValue {
        JSONSchema.anyOf(
            "A condition: on a topic (topic + a threshold), or all/any/not of conditions.",
            [JSONSchema.reference("leaf"), JSONSchema.reference("combination")]
        )
    }

    static var leaf: JSONValue {
        JSONSchema.object(
            "A condition on one topic: a threshold on a field of its readings, or on a window of them.",
            properties(RuleLoader.leafKeys),
            required: ["topic"]
        )
    }

    static var combination: JSONValue {
        adding(
            ("minProperties", .number(1)),
            ("maxProperties", .number(1)),
            to: JSONSchema.object(
                "all, any or not of conditions (exactly one of the three).",
                properties(RuleLoader.combinationKeys)
            )
        )
    }

    static var action: JSONValue {
        let publish = JSONSchema.object(
            "Publish an MQTT message.",
            [
                ("topic", JSONSchema.text("The topic; {capture} placeholders are filled.")),
                (
                    "payload",
                    .object([
                        ("description", .string("The JSON payload; strings take placeholders ({value}, {reason}, …)."))
                    ])
                ),
                ("qos", JSONSchema.integer("0, 1 (default) or 2.", minimum: 0, maximum: 2)),
                ("retain", JSONSchema.boolean("Retain the message (default false).")),
            ],
            required: ["topic"]
        )
        let log = JSONSchema.anyOf(
            "Write a log line.",
            [
                JSONSchema.text("The message; placeholders are filled."),
                JSONSchema.object(
                    "A log action.",
                    [("message", JSONSchema.text("The message."))],
                    required: ["message"]
                ),
            ]
        )
        let arguments = JSONSchema.array(
            "The program and its arguments (no shell); placeholders are filled.",
            of: JSONSchema.text("An argument."),
            minItems: 1
        )
        let command = JSONSchema.anyOf(
            "Run a program, killed after its timeout (default 10s).",
            [
                arguments,
                JSONSchema.object(
                    "A command action.",
                    [("run", arguments), ("timeout", JSONSchema.reference("duration", "Kill it after this long."))],
                    required: ["run"]
                ),
            ]
        )
        let webhook = JSONSchema.object(
            "POST a JSON body to an HTTP(S) URL (headers and TLS trust from the engine's --webhook-config).",
            [
                (
                    "url",
                    JSONSchema.text("http:// or https:// URL; placeholders in its path and query are percent-encoded.")
                ),
                (
                    "body",
                    .object([
                        (
                            "description",
                            .string("The JSON body (a payload template); without it, what happened as one object.")
                        )
                    ])
                ),
                (
                    "timeout",
                    JSONSchema.reference("duration", "Give up after this long, retries included (default 5s).")
                ),
            ],
            required: ["url"]
        )
        let handlers = ["publish": publish, "log": log, "command": command, "webhook": webhook]
        return adding(
            ("minProperties", .number(1)),
            ("maxProperties", .number(1)),
            to: JSONSchema.object(
                "One action: publish, log, command or webhook.",
                RuleLoader.actionKeys.map { key in
                    guard let schema = handlers[key] else { preconditionFailure("no schema for the action '\(key)'") }
                    return (key, schema)
                }
            )
        )
    }

    /// The schema of each key, by name.
    static func properties(_ keys: [String]) -> [(String, JSONValue)] {
        keys.map { key in
            guard let schema = propertySchemas[key] else { preconditionFailure("no schema for the rule key '\(key)'") }
            return (key, schema)
        }
    }

    static func adding(_ pairs: (String, JSONValue)..., to schema: JSONValue) -> JSONValue {
        guard case .object(var existing) = schema else { return schema }
        existing += pairs.map { (key: $0.0, value: $0.1) }
        return .object(existing)
    }

    /// mon … sun in any case (editors' regular expressions have no case-insensitive flag inside a pattern).
    static let dayPattern =
        "^(" + Rule.Schedule.dayNames.map { $0.map { "[\($0)\($0.uppercased())]" }.joined() }.joined(separator: "|")
        + ")$"

    static let windowSpan = JSONSchema.anyOf(
        "A duration (the readings within it, sliding on the clock) or a whole number N (the last N readings).",
        [JSONSchema.reference("duration"), JSONSchema.integer("The last N usable readings.", minimum: 1)]
    )

    static let propertySchemas: [String: JSONValue] = [
        "id": JSONSchema.text("The rule's id: letters, digits, '_', '.' and '-'; unique across files."),
        "description": JSONSchema.text("What the rule is for."),
        "topic": JSONSchema.text("The topic filter; {name} captures one level (an instance per value)."),
        "field": JSONSchema.text("The dotted path of the value in a JSON payload (default value)."),
        "above": JSONSchema.number("Holds while the value is above this."),
        "below": JSONSchema.number("Holds while the value is below this."),
        "between": JSONSchema.array(
            "Holds while low ≤ value ≤ high.",
            of: .object([("type", .string("number"))]),
            minItems: 2,
            maxItems: 2
        ),
        "outside": JSONSchema.array(
            "Holds while the value is below low or above high.",
            of: .object([("type", .string("number"))]),
            minItems: 2,
            maxItems: 2
        ),
        "equals": .object([
            ("type", .array([.string("string"), .string("number"), .string("boolean")])),
            ("description", .string("Holds while the value equals this (states compare without case).")),
        ]),
        "clear": JSONSchema.number("Hysteresis: an above/below condition clears only at this level."),
        "for": JSONSchema.reference("duration", "Fire only after the condition held this long."),
        "cooldown": JSONSchema.reference("duration", "After firing, clear no sooner than this."),
        "stale": JSONSchema.reference("duration", "No reading for this long: unknown (a leaf) or fire (a rule)."),
        "severity": JSONSchema.oneOf("info, warning (default) or critical.", ["info", "warning", "critical"]),
        "on_unknown": JSONSchema.oneOf(
            "What an unknown condition does: keep (default), fire or clear.",
            [
                "keep", "fire", "clear",
            ]
        ),
        "min_on": JSONSchema.reference("duration", "Stay firing at least this long."),
        "min_off": JSONSchema.reference("duration", "Stay clear at least this long before firing again."),
        "max_transitions": JSONSchema.anyOf(
            "At most N transitions per duration ('6 per 1h'; a bare count is per hour).",
            [
                JSONSchema.text("N per DURATION", pattern: "^[0-9]+( per (0|([0-9]+(ms|s|m|h|d))+))?$"),
                JSONSchema.integer("Transitions per hour.", minimum: 1),
            ]
        ),
        "on_fire": JSONSchema.array("Actions when the rule fires.", of: JSONSchema.reference("action")),
        "on_clear": JSONSchema.array("Actions when the rule clears.", of: JSONSchema.reference("action")),
        "all": JSONSchema.array(
            "Holds while every condition holds.",
            of: JSONSchema.reference("condition"),
            minItems: 1
        ),
        "any": JSONSchema.array(
            "Holds while some condition holds.",
            of: JSONSchema.reference("condition"),
            minItems: 1
        ),
        "not": JSONSchema.reference("condition", "Holds while the condition does not."),
        "group_by": JSONSchema.anyOf(
            "Captures that make one group of sensors voting together.",
            [JSONSchema.text("One capture."), JSONSchema.array("Captures.", of: JSONSchema.text("A capture."))]
        ),
        "match": JSONSchema.text(
            "How many members must hold: any (default), all or 'at_least N'.",
            pattern: "^(any|all|at_least [0-9]+)$"
        ),
        "name": JSONSchema.text("The condition's name: {name} in actions is its value."),
        "avg": windowSpan,
        "min": windowSpan,
        "max": windowSpan,
        "sum": windowSpan,
        "count": JSONSchema.reference("duration", "How many usable readings came within this duration."),
        "rate": JSONSchema.object(
            "(newest − oldest) / their time apart × per, over the readings within 'over'.",
            [
                ("per", JSONSchema.reference("duration", "The unit of time of the rate (1m: per minute).")),
                ("over", JSONSchema.reference("duration", "The window the rate is measured over.")),
            ],
            required: ["per", "over"]
        ),
        "delta": JSONSchema.reference("duration", "Newest − oldest reading within this duration."),
        "at_least": JSONSchema.text(
            "'M of N' (of the last N readings) or 'M in D' (within a duration): at least M hold.",
            pattern: "^[0-9]+ (of [0-9]+|in ([0-9]+(ms|s|m|h|d))+)$"
        ),
        "times": JSONSchema.text(
            "'M in D': the threshold became true (from false or unknown) at least M times within D.",
            pattern: "^[0-9]+ in ([0-9]+(ms|s|m|h|d))+$"
        ),
        "max_samples": JSONSchema.integer(
            "The most readings one window keeps per instance (default 10000).",
            minimum: 1
        ),
        "keep_firing_for": JSONSchema.reference("duration", "Keep firing this long after the condition stops holding."),
        "active": JSONSchema.object(
            "When the rule is active: days and a local time span in a time zone.",
            [
                (
                    "days",
                    JSONSchema.array(
                        "The days the span starts on (default every day).",
                        of: .object([("type", .string("string")), ("pattern", .string(dayPattern))]),
                        minItems: 1
                    )
                ),
                ("from", JSONSchema.text("Local start time HH:MM.", pattern: "^[0-9]+:[0-9]{2}(:[0-9]{2})?$")),
                (
                    "to",
                    JSONSchema.text(
                        "Local end time HH:MM (24:00 for midnight).",
                        pattern: "^[0-9]+:[0-9]{2}(:[0-9]{2})?$"
                    )
                ),
                ("timezone", JSONSchema.text("An IANA time zone such as Europe/Berlin (default UTC).")),
            ],
            required: ["from", "to"]
        ),
        "outside_active": JSONSchema.oneOf(
            "Outside the schedule: clear (default) or hold the state.",
            ["clear", "hold"]
        ),
        "flapping": JSONSchema.object(
            "Flap detection: the weighted percentage of changes among the last results.",
            [
                (
                    "history",
                    JSONSchema.integer("How many results count (3 to 64, default 21).", minimum: 3, maximum: 64)
                ),
                (
                    "low",
                    JSONSchema.number("Below this percentage it stops flapping (default 20).", minimum: 0, maximum: 100)
                ),
                ("high", JSONSchema.number("From this percentage on it flaps (default 30).", minimum: 0, maximum: 100)),
                ("state", JSONSchema.oneOf("The state a flapping instance is held in.", ["hold", "fire", "clear"])),
            ]
        ),
    ]
}
