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
        /// No threshold: a single condition with `stale` alone, which fires when no usable reading came for its
        /// `stale` and clears on the next one.
        case staleOnly
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

    /// One condition on one topic: a single-condition rule's, a leaf of `all`/`any`/`not`, or what each
    /// member of a group is held to.
    public struct Leaf: Hashable, Sendable {
        public var topic: TopicPattern
        /// Dotted path into a JSON object payload; a bare scalar payload is used as is.
        public var field: [String]
        public var condition: Condition
        /// The hysteresis threshold that clears an `above`/`below` condition.
        public var clear: Double?
        /// A single condition fires when no reading came for this long; a leaf or member turns unknown.
        public var staleMilliseconds: Int64?
        /// `{NAME}` in actions is this leaf's current value.
        public var name: String?
        /// The threshold applies to this window's value (`avg: 5m`, `rate: …`, `at_least: 3 of 5`) rather
        /// than to each reading.
        public var window: Window?
        /// The most readings a window keeps per instance (the oldest is dropped, and counted, past it).
        public var maxSamples: Int
        public var location: SourceLocation

        public init(
            topic: TopicPattern,
            field: [String] = ["value"],
            condition: Condition,
            clear: Double? = nil,
            staleMilliseconds: Int64? = nil,
            name: String? = nil,
            window: Window? = nil,
            maxSamples: Int = Window.defaultMaxSamples,
            location: SourceLocation
        ) {
            self.topic = topic
            self.field = field
            self.condition = condition
            self.clear = clear
            self.staleMilliseconds = staleMilliseconds
            self.name = name
            self.window = window
            self.maxSamples = maxSamples
            self.location = location
        }

        /// The threshold as shown in `{threshold}` and reasons.
        public var thresholdText: String {
            switch condition {
            case .above(let value), .below(let value): JSONValue.format(value)
            case .between(let low, let high), .outside(let low, let high):
                "[\(JSONValue.format(low)), \(JSONValue.format(high))]"
            case .equals(let value): value.jsonText
            case .staleOnly: "no reading for \(staleMilliseconds.map(RuleDuration.format) ?? "-")"
            }
        }
    }

    /// How the leaves of a combined rule make its condition (`all`, `any`, `not`, nested).
    public indirect enum Combination: Hashable, Sendable {
        /// The leaf at this index of `leaves`.
        case leaf(Int)
        case all([Combination])
        case any([Combination])
        case not(Combination)
    }

    /// How many members of a group must hold for the group to hold.
    public enum Match: Hashable, Sendable, CustomStringConvertible {
        case any
        case all
        case atLeast(Int)

        public var description: String {
            switch self {
            case .any: "any"
            case .all: "all"
            case .atLeast(let count): "at_least \(count)"
            }
        }
    }

    /// Voting: one instance per value of `captureNames`; every other captured value is a member.
    public struct Grouping: Hashable, Sendable {
        public var captureNames: [String]
        public var match: Match

        public init(captureNames: [String], match: Match) {
            self.captureNames = captureNames
            self.match = match
        }
    }

    public var id: String
    public var description: String?
    /// The conditions on topics: one for a single-condition or grouped rule, every leaf of a combined one.
    public var leaves: [Leaf]
    /// How the leaves combine; nil for a single condition (`topic:` with one threshold).
    public var combination: Combination?
    /// Set when the rule votes across the members of a group (`group_by`, `match`).
    public var grouping: Grouping?
    /// The names an instance is labelled with: the topic's captures, every leaf's (first seen first), or
    /// the `group_by` names.
    public var captureNames: [String]
    public var forMilliseconds: Int64
    public var cooldownMilliseconds: Int64
    public var severity: Severity
    public var onUnknown: UnknownPolicy
    public var minOnMilliseconds: Int64
    public var minOffMilliseconds: Int64
    public var maxTransitions: TransitionLimit?
    /// A firing instance whose condition stops holding clears only once it has not held this long.
    public var keepFiringForMilliseconds: Int64 = 0
    /// When the rule may fire (`active:`); nil: always.
    public var schedule: Schedule?
    /// What a firing instance does when its schedule ends.
    public var outsideActive: OutsideActive = .clear
    /// Flap detection (`flapping:`), nil when off.
    public var flapping: FlapDetection?
    public var onFire: [Action]
    public var onClear: [Action]
    /// Where the rule starts in its file.
    public var location: SourceLocation

    /// Whether the rule uses the clock beyond `for`, `cooldown` and `stale`: a window, a schedule,
    /// `keep_firing_for` or flap detection.
    public var usesClock: Bool {
        leaves.contains { $0.window != nil } || keepFiringForMilliseconds > 0 || schedule != nil || flapping != nil
    }

    /// Whether the rule is a single condition with the documented single-condition behaviour (its clear
    /// level applies once it fires, its `stale` fires it) rather than a combination or a group.
    public var isSingleCondition: Bool { combination == nil && grouping == nil }

    /// The single condition's topic (a combined rule's first leaf's).
    public var topic: TopicPattern { leaves[0].topic }
    /// The single condition's field.
    public var field: [String] { leaves[0].field }
    /// The single condition's threshold.
    public var condition: Condition { leaves[0].condition }
    /// The single condition's clear level.
    public var clear: Double? { leaves[0].clear }
    /// The single condition's `stale` (a combined rule has none of its own: its leaves have theirs).
    public var staleMilliseconds: Int64? { isSingleCondition ? leaves[0].staleMilliseconds : nil }

    /// Any rule: a single condition (`combination` and `grouping` nil), a combination or a group.
    public init(
        id: String,
        description: String?,
        leaves: [Leaf],
        combination: Combination?,
        grouping: Grouping?,
        forMilliseconds: Int64,
        cooldownMilliseconds: Int64,
        severity: Severity,
        onUnknown: UnknownPolicy,
        minOnMilliseconds: Int64,
        minOffMilliseconds: Int64,
        maxTransitions: TransitionLimit?,
        onFire: [Action],
        onClear: [Action],
        location: SourceLocation
    ) {
        self.id = id
        self.description = description
        self.leaves = leaves
        self.combination = combination
        self.grouping = grouping
        self.captureNames = Rule.captureNames(leaves: leaves, grouping: grouping)
        self.forMilliseconds = forMilliseconds
        self.cooldownMilliseconds = cooldownMilliseconds
        self.severity = severity
        self.onUnknown = onUnknown
        self.minOnMilliseconds = minOnMilliseconds
        self.minOffMilliseconds = minOffMilliseconds
        self.maxTransitions = maxTransitions
        self.onFire = onFire
        self.onClear = onClear
        self.location = location
    }

    /// The group's names, or every leaf's captures in order of first appearance.
    static func captureNames(leaves: [Leaf], grouping: Grouping?) -> [String] {
        if let grouping { return grouping.captureNames }
        var names: [String] = []
        for leaf in leaves {
            for name in leaf.topic.captureNames where !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// The whole condition in one line, as `explain` and `/api/rules` show it:
    /// `all(sensors/{room}/humidity above 80 clear 75, not(sensors/{room}/window equals "open"))`.
    public var conditionText: String {
        func leafText(_ leaf: Leaf) -> String {
            var text = "\(leaf.topic) "
            if let window = leaf.window { text += "\(window) " }
            switch leaf.condition {
            case .above(let value): text += "above \(JSONValue.format(value))"
            case .below(let value): text += "below \(JSONValue.format(value))"
            case .between: text += "between \(leaf.thresholdText)"
            case .outside: text += "outside \(leaf.thresholdText)"
            case .equals(let value): text += "equals \(value.jsonText)"
            case .staleOnly: text.removeLast()
            }
            if let clear = leaf.clear { text += " clear \(JSONValue.format(clear))" }
            if let stale = leaf.staleMilliseconds { text += " stale \(RuleDuration.format(stale))" }
            return text
        }
        func text(_ combination: Combination) -> String {
            switch combination {
            case .leaf(let index): leafText(leaves[index])
            case .all(let elements): "all(\(elements.map(text).joined(separator: ", ")))"
            case .any(let elements): "any(\(elements.map(text).joined(separator: ", ")))"
            case .not(let element): "not(\(text(element)))"
            }
        }
        if let combination { return text(combination) }
        let single = leafText(leaves[0])
        guard let grouping else { return single }
        return "\(single), group_by [\(grouping.captureNames.joined(separator: ", "))], match \(grouping.match)"
    }

    /// The single condition's threshold as shown in `{threshold}` and reasons.
    public var thresholdText: String { leaves[0].thresholdText }

    /// Two rules with the same definition keep their instances' state across a reload: every field but
    /// the description and the source positions (of the rule and of each action) is compared.
    public func hasSameDefinition(as other: Rule) -> Bool {
        definition == other.definition
    }

    /// When `other` differs from this rule only in the length of some windows (`avg: 5m` → `avg: 10m`), the
    /// indexes of those leaves; nil when anything else differs or nothing does.
    func leavesWithOnlyWindowLengthChanged(in other: Rule) -> [Int]? {
        guard leaves.count == other.leaves.count else { return nil }
        var adjusted = other
        var changed: [Int] = []
        for index in leaves.indices {
            guard let mine = leaves[index].window, let theirs = other.leaves[index].window, mine != theirs,
                mine.differsOnlyInLength(from: theirs)
            else { continue }
            adjusted.leaves[index].window = mine
            changed.append(index)
        }
        return !changed.isEmpty && hasSameDefinition(as: adjusted) ? changed : nil
    }

    /// The rule without what does not change its behaviour: description and source positions.
    var definition: Rule {
        var rule = self
        rule.description = nil
        rule.location = SourceLocation(file: "", line: 0, column: 0)
        for index in rule.leaves.indices { rule.leaves[index].location = rule.location }
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
        /// POST a JSON body to an HTTP(S) URL, retried within the timeout.
        case webhook(url: Template, body: PayloadTemplate?, timeoutMilliseconds: Int64)
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

extension Rule.Condition {
    /// The condition as a rule file writes it: its key and its value (`above: 30`, `between: [18, 24]`);
    /// `threshold: null` for `stale` alone.
    public var keyAndValue: (key: String, value: JSONValue) {
        switch self {
        case .above(let value): ("above", .number(value))
        case .below(let value): ("below", .number(value))
        case .between(let low, let high): ("between", .array([.number(low), .number(high)]))
        case .outside(let low, let high): ("outside", .array([.number(low), .number(high)]))
        case .equals(let value): ("equals", value)
        case .staleOnly: ("threshold", .null)
        }
    }
}
