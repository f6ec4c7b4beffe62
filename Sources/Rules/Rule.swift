import FileFormats

/// One threshold rule, validated. See docs/rules.md for the meaning of every field.
public struct Rule: Hashable, Sendable {
    /// What the value is compared with.
    public enum Condition: Hashable, Sendable {
        case above(Double)
        case below(Double)
        case between(Double, Double)
        case outside(Double, Double)
        case equals(JSONValue)
    }

    /// How bad it is when the rule fires.
    public enum Severity: String, Hashable, Sendable, CaseIterable {
        case info, warning, critical
    }

    /// What an unusable reading does to the instance.
    public enum UnknownPolicy: String, Hashable, Sendable, CaseIterable {
        /// Leave the instance exactly as it is (default).
        case keep
        /// Treat it as if the condition held.
        case fire
        /// Treat it as if the condition did not hold.
        case clear
    }

    /// A limit on transitions: at most `count` within `windowMilliseconds`.
    public struct TransitionLimit: Hashable, Sendable {
        public var count: Int
        public var windowMilliseconds: Int64

        public init(count: Int, windowMilliseconds: Int64) {
            self.count = count
            self.windowMilliseconds = windowMilliseconds
        }
    }

    public var id: String
    public var description: String?
    public var topic: TopicPattern
    /// Dotted path into a JSON object payload; a bare scalar payload is used as is.
    public var field: [String]
    public var condition: Condition
    /// The hysteresis threshold that clears an `above`/`below` rule.
    public var clear: Double?
    public var forMilliseconds: Int64
    public var cooldownMilliseconds: Int64
    public var staleMilliseconds: Int64?
    public var severity: Severity
    public var onUnknown: UnknownPolicy
    public var minOnMilliseconds: Int64
    public var minOffMilliseconds: Int64
    public var maxTransitions: TransitionLimit?
    public var onFire: [Action]
    public var onClear: [Action]
    /// Where the rule starts in its file.
    public var location: SourceLocation

    /// The threshold as shown in `{threshold}` and reasons.
    public var thresholdText: String {
        switch condition {
        case .above(let value), .below(let value): JSONValue.format(value)
        case .between(let low, let high), .outside(let low, let high):
            "[\(JSONValue.format(low)), \(JSONValue.format(high))]"
        case .equals(let value): value.jsonText
        }
    }

    /// Two rules with the same definition keep their instances' state across a reload: every field but
    /// the description and the source positions (of the rule and of each action) is compared.
    public func hasSameDefinition(as other: Rule) -> Bool {
        definition == other.definition
    }

    /// The rule without what does not change its behaviour: description and source positions.
    var definition: Rule {
        var rule = self
        rule.description = nil
        rule.location = SourceLocation(file: "", line: 0, column: 0)
        for index in rule.onFire.indices { rule.onFire[index].location = rule.location }
        for index in rule.onClear.indices { rule.onClear[index].location = rule.location }
        return rule
    }
}

/// Something a rule does on a transition.
public struct Action: Hashable, Sendable {
    /// Which handler runs it.
    public enum Handler: Hashable, Sendable {
        /// Publish an MQTT message (a control event).
        case publish(topic: Template, payload: PayloadTemplate?, qos: Int, retain: Bool)
        /// Write a structured log line.
        case log(message: Template)
        /// Run a program (no shell) with arguments, bounded by a timeout.
        case command(arguments: [Template], timeoutMilliseconds: Int64)
    }

    public var handler: Handler
    public var location: SourceLocation

    public init(handler: Handler, location: SourceLocation) {
        self.handler = handler
        self.location = location
    }
}

/// A JSON payload whose strings may hold placeholders.
public indirect enum PayloadTemplate: Hashable, Sendable {
    case literal(JSONValue)
    case string(Template)
    case array([PayloadTemplate])
    case object([String], [PayloadTemplate])

    /// Every placeholder used anywhere inside.
    public var placeholders: [String] {
        switch self {
        case .literal: []
        case .string(let template): template.placeholders
        case .array(let items): items.flatMap(\.placeholders)
        case .object(_, let values): values.flatMap(\.placeholders)
        }
    }

    /// The payload with placeholders filled; a string that is only `{value}` or `{threshold}` of a
    /// numeric rule becomes a JSON number.
    func render(_ lookup: (String) -> JSONValue?) -> JSONValue {
        switch self {
        case .literal(let value): return value
        case .string(let template):
            if let name = template.soloPlaceholder, let value = lookup(name) { return value }
            return .string(
                template.render { name in
                    guard let value = lookup(name) else { return nil }
                    if case .string(let text) = value { return text }
                    return value.jsonText
                }
            )
        case .array(let items): return .array(items.map { $0.render(lookup) })
        case .object(let keys, let values):
            return .object(zip(keys, values).map { ($0, $1.render(lookup)) })
        }
    }
}
