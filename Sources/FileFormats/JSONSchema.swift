/// The few JSON Schema (draft 2020-12) shapes that the rule and device file schemas are built from.
/// Scalars a loader reads as text also take numbers and booleans: `id: 42` is the id "42" to the loader, and
/// an editor reads the unquoted 42 as a number.
public enum JSONSchema {
    public static let dialect = "https://json-schema.org/draft/2020-12/schema"

    /// A mapping with exactly these keys (any other key fails), in this order for completion.
    public static func object(
        _ description: String,
        _ properties: [(String, JSONValue)],
        required: [String] = []
    ) -> JSONValue {
        var pairs: [(key: String, value: JSONValue)] = [
            ("type", .string("object")), ("description", .string(description)),
            ("properties", .object(properties.map { (key: $0.0, value: $0.1) })),
        ]
        if !required.isEmpty { pairs.append(("required", .array(required.map(JSONValue.string)))) }
        pairs.append(("additionalProperties", .bool(false)))
        return .object(pairs)
    }

    /// A scalar the loader reads as text.
    public static func text(_ description: String, pattern: String? = nil) -> JSONValue {
        guard let pattern else {
            return .object([
                ("type", .array([.string("string"), .string("number"), .string("boolean")])),
                ("description", .string(description)),
            ])
        }
        return .object([
            ("type", .string("string")), ("description", .string(description)), ("pattern", .string(pattern)),
        ])
    }

    public static func number(_ description: String, minimum: Double? = nil, maximum: Double? = nil) -> JSONValue {
        var pairs: [(key: String, value: JSONValue)] = [
            ("type", .string("number")), ("description", .string(description)),
        ]
        if let minimum { pairs.append(("minimum", .number(minimum))) }
        if let maximum { pairs.append(("maximum", .number(maximum))) }
        return .object(pairs)
    }

    public static func integer(_ description: String, minimum: Int? = nil, maximum: Int? = nil) -> JSONValue {
        var pairs: [(key: String, value: JSONValue)] = [
            ("type", .string("integer")), ("description", .string(description)),
        ]
        if let minimum { pairs.append(("minimum", .number(Double(minimum)))) }
        if let maximum { pairs.append(("maximum", .number(Double(maximum)))) }
        return .object(pairs)
    }

    public static func boolean(_ description: String) -> JSONValue {
        .object([("type", .string("boolean")), ("description", .string(description))])
    }

    /// One of these words.
    public static func oneOf(_ description: String, _ words: [String]) -> JSONValue {
        .object([("description", .string(description)), ("enum", .array(words.map(JSONValue.string)))])
    }

    public static func array(
        _ description: String,
        of items: JSONValue,
        minItems: Int? = nil,
        maxItems: Int? = nil
    )
        -> JSONValue
    {
        var pairs: [(key: String, value: JSONValue)] = [
            ("type", .string("array")), ("description", .string(description)), ("items", items),
        ]
        if let minItems { pairs.append(("minItems", .number(Double(minItems)))) }
        if let maxItems { pairs.append(("maxItems", .number(Double(maxItems)))) }
        return .object(pairs)
    }

    /// Any of these shapes (e.g. a string or a mapping).
    public static func anyOf(_ description: String, _ shapes: [JSONValue]) -> JSONValue {
        .object([("description", .string(description)), ("anyOf", .array(shapes))])
    }

    /// A reference to a definition of the same schema.
    public static func reference(_ name: String, _ description: String? = nil) -> JSONValue {
        var pairs: [(key: String, value: JSONValue)] = [("$ref", .string("#/$defs/\(name)"))]
        if let description { pairs.append(("description", .string(description))) }
        return .object(pairs)
    }

    /// A duration as rule and device files write it: `500ms`, `10s`, `5m`, `1h30m`, `2d` or `0`.
    public static let durationPattern = "^(0|([0-9]+(ms|s|m|h|d))+)$"

    /// The `$defs` entry for durations.
    public static let durationDefinition: JSONValue = anyOf(
        "A duration: 500ms, 10s, 5m, 1h, 1h30m, 2d, or 0",
        [
            .object([("type", .string("string")), ("pattern", .string(durationPattern))]),
            .object([("const", .number(0))]),
        ]
    )

    /// A whole schema document.
    public static func document(
        id: String,
        title: String,
        root: JSONValue,
        definitions: [(String, JSONValue)]
    ) -> JSONValue {
        guard case .object(let rootPairs) = root else { return root }
        return .object(
            [("$schema", .string(dialect)), ("$id", .string(id)), ("title", .string(title))] + rootPairs
                + [("$defs", .object(definitions.map { (key: $0.0, value: $0.1) }))]
        )
    }
}
