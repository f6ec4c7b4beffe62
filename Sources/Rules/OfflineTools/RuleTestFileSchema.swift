import FileFormats

/// The JSON Schema (draft 2020-12) of rule test files (`rules-engine schema tests`), for editors: it completes
/// the keys `RuleTestSuite` accepts and fails every other key.
public enum RuleTestFileSchema {
    /// The schema's `$id` (the file is committed as `docs/schema/tests.schema.json`).
    public static let identifier = "urn:sensor-pipeline:schema:tests"

    public static var document: JSONValue {
        JSONSchema.document(
            id: identifier,
            title: "sensor-pipeline rule test file",
            root: JSONSchema.object(
                "A rule test file: rule files, and tests of readings at offsets with the transitions expected.",
                properties(RuleTestSuite.fileKeys, from: fileProperties),
                required: ["rule_files", "tests"]
            ),
            definitions: [
                ("test", test), ("reading", reading), ("expectation", expectation),
                ("duration", JSONSchema.durationDefinition),
            ]
        )
    }

    static let anyValue: JSONValue = .object([("description", .string("Any JSON value."))])

    static let fileProperties: [String: JSONValue] = [
        "rule_files": JSONSchema.array(
            "The rule files the tests run against, relative to this file.",
            of: JSONSchema.text("A rule file path.")
        ),
        "tests": JSONSchema.array("The tests.", of: JSONSchema.reference("test")),
    ]

    static var test: JSONValue {
        JSONSchema.object(
            "One test: readings at offsets from 0, the clock run to `until`, and the transitions expected.",
            properties(
                RuleTestSuite.caseKeys,
                from: [
                    "name": JSONSchema.text("What the test shows."),
                    "rules": JSONSchema.array(
                        "Only these rules' transitions are compared (default: every rule of the files).",
                        of: JSONSchema.text("A rule id.")
                    ),
                    "readings": JSONSchema.array("The readings, in any order.", of: JSONSchema.reference("reading")),
                    "until": JSONSchema.reference("duration", "Run the clock this far."),
                    "expect": JSONSchema.anyOf(
                        "Every transition, in order; empty means none at all.",
                        [
                            JSONSchema.array("The transitions.", of: JSONSchema.reference("expectation")),
                            .object([("type", .string("null"))]),
                        ]
                    ),
                ]
            ),
            required: ["readings"]
        )
    }

    static var reading: JSONValue {
        JSONSchema.object(
            "A reading at an offset, or a series of them (`every` + `values`).",
            properties(
                RuleTestSuite.readingKeys,
                from: [
                    "at": JSONSchema.reference("duration", "Its offset from the start."),
                    "topic": JSONSchema.text("The topic it arrives on."),
                    "payload": anyValue,
                    "every": JSONSchema.reference("duration", "The interval of a series."),
                    "values": JSONSchema.array("A series' payloads, one every `every` from `at`.", of: anyValue),
                ]
            ),
            required: ["at", "topic"]
        )
    }

    static var expectation: JSONValue {
        JSONSchema.object(
            "A transition expected at an offset; the optional keys compare only what they give.",
            properties(
                RuleTestSuite.expectationKeys,
                from: [
                    "at": JSONSchema.reference("duration", "When it happens."),
                    "rule": JSONSchema.text("The rule id."),
                    "transition": JSONSchema.oneOf("fire or clear.", ["fire", "clear"]),
                    "labels": .object([("type", .string("object")), ("description", .string("The captures."))]),
                    "topic": JSONSchema.text("The topic of its publish action."),
                    "payload": anyValue,
                    "log": JSONSchema.text("The message of its log action."),
                    "webhook": JSONSchema.text("The URL of its webhook action."),
                    "conditions": .object([
                        ("type", .string("object")),
                        ("description", .string("Leaves' values at the transition, by name or topic.")),
                    ]),
                    "members": JSONSchema.array("The members holding (a group).", of: JSONSchema.text("A member.")),
                    "value": anyValue,
                ]
            ),
            required: ["at", "rule", "transition"]
        )
    }

    static func properties(_ keys: [String], from schemas: [String: JSONValue]) -> [(String, JSONValue)] {
        keys.map { key in
            guard let schema = schemas[key] else { preconditionFailure("no schema for the test file key '\(key)'") }
            return (key, schema)
        }
    }
}
