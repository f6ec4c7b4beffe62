import FileFormats
import Yams

/// Rule unit tests, after promtool's: rule files, readings at offsets, the transitions expected at offsets.
///
/// ```yaml
/// rule_files: [server-room.yaml]          # relative to the test file
/// tests:
///   - name: cooling switches on after 10 s above 30
///     readings:
///       - {at: 0s, topic: sensors/rack-1/temperature, payload: {value: 31}}
///       - {at: 20s, every: 5s, topic: sensors/rack-1/temperature, values: [29, 27.5]}
///     until: 1m                            # optional: run the clock this far
///     expect:
///       - {at: 10s, rule: rack-cooling, transition: fire, labels: {rack: rack-1},
///          topic: actuators/rack-1/cooling/set, payload: {state: "on"}}
/// ```
/// Every transition must be expected, in order. `labels`, `topic` (a publish action's topic) and
/// `payload` (keys compared when given) are optional. For a combined rule, `conditions: {humidity: 85}`
/// states leaves' values at the transition (by `name:` or by topic, `unknown` for an unknown leaf); for a
/// group, `members: [p1, p3]` states exactly which members held.
public struct RuleTestSuite: Sendable {
    /// One test case.
    public struct Case: Sendable {
        public var name: String
        public var readings: [Reading]
        public var until: Int64?
        public var expected: [Expectation]
        public var location: SourceLocation
        /// `rules: [ids]`: only these rules' transitions are compared (nil: every rule of the files), each id
        /// with where it is written.
        public var rules: [(id: String, location: SourceLocation)]?
    }

    /// One expected transition.
    public struct Expectation: Sendable, CustomStringConvertible {
        public var at: Int64
        public var rule: String
        public var transition: TransitionKind
        public var labels: [String: String]?
        public var topic: String?
        public var payload: JSONValue?
        public var log: String?
        /// A webhook action's URL (with `payload`, a part of its body).
        public var webhook: String?
        /// Leaves' values at the transition, by name or topic (`"unknown"` for an unknown leaf).
        public var conditions: [(key: String, value: JSONValue)]?
        /// The members holding at the transition, by name (sorted).
        public var members: [String]?
        /// The value the condition compared at the transition: a window's aggregate (`avg: 5m` → the mean).
        public var value: JSONValue?
        /// Where its `rule:` is written.
        public var location: SourceLocation

        public var description: String {
            var text = "\(RuleDuration.format(at)) \(transition.rawValue) \(rule)"
            if let labels {
                text += " " + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            }
            if let topic { text += " → \(topic)" }
            if let webhook { text += " → POST \(webhook)" }
            if let payload { text += " \(payload.jsonText)" }
            if let conditions {
                text += " " + conditions.map { "\($0.key)=\($0.value.textValue)" }.joined(separator: ",")
            }
            if let members { text += " members " + members.joined(separator: ",") }
            if let value { text += " value \(value.textValue)" }
            return text
        }
    }

    /// One test's verdict.
    public struct Result: Sendable {
        public var name: String
        public var passed: Bool
        /// Expected and actual transitions side by side, when it failed.
        public var report: String
        /// What else happened that a reader should know: instances that started or stopped flapping.
        public var notes: [String] = []
    }

    /// The rule files named, relative to the test file as written.
    public var ruleFiles: [String]
    public var cases: [Case]

    /// The keys of a test file, of a test, of a reading and of an expected transition (the schema's too).
    static let fileKeys = ["rule_files", "tests"]
    static let caseKeys = ["name", "rules", "readings", "until", "expect"]
    static let readingKeys = ["at", "topic", "payload", "every", "values"]
    static let expectationKeys = [
        "at", "rule", "transition", "labels", "topic", "payload", "log", "webhook", "conditions", "members", "value",
    ]

    /// Parses a test file; throws every problem with its position.
    public static func parse(_ source: RuleSource) throws(RuleLoadError) -> RuleTestSuite {
        var reader = YAMLReader(file: source.path)
        var suite = RuleTestSuite(ruleFiles: [], cases: [])
        guard let root = reader.compose(source.text),
            let top = reader.mapping(root, what: "a rule test file", allowed: fileKeys)
        else { throw RuleLoadError(diagnostics: reader.diagnostics) }
        if let entry = top["rule_files"], let items = reader.sequence(entry.value, what: "'rule_files'") {
            suite.ruleFiles = items.compactMap { reader.string($0, what: "a rule file path") }
        } else if top["rule_files"] == nil {
            reader.error(root, "a rule test file needs 'rule_files:'")
        }
        if let entry = top["tests"], let items = reader.sequence(entry.value, what: "'tests'") {
            for item in items {
                if let testCase = parseCase(item, reader: &reader) { suite.cases.append(testCase) }
            }
        } else if top["tests"] == nil {
            reader.error(root, "a rule test file needs 'tests:'")
        }
        guard reader.diagnostics.isEmpty else { throw RuleLoadError(diagnostics: reader.diagnostics) }
        return suite
    }

    private static func parseCase(_ node: Node, reader: inout YAMLReader) -> Case? {
        guard
            let entries = reader.mapping(node, what: "a test", allowed: caseKeys)
        else {
            return nil
        }
        let name =
            entries["name"].flatMap { reader.string($0.value, what: "'name'") }
            ?? "test at line \(reader.location(node).line)"
        var readings: [Reading] = []
        if let entry = entries["readings"], let items = reader.sequence(entry.value, what: "'readings'") {
            for item in items { readings += parseReadings(item, reader: &reader) }
        }
        readings.sort { $0.timestamp < $1.timestamp }
        var expected: [Expectation] = []
        if let entry = entries["expect"] {
            if case .scalar = entry.value, YAMLReader.tagName(entry.value) == .null {
                // `expect:` with nothing: no transition at all.
            } else if let items = reader.sequence(entry.value, what: "'expect'") {
                expected = items.compactMap { parseExpectation($0, reader: &reader) }
            }
        }
        let until = entries["until"].flatMap { reader.duration($0.value, what: "'until'") }
        var rules: [(id: String, location: SourceLocation)]?
        if let entry = entries["rules"], let items = reader.sequence(entry.value, what: "'rules'") {
            rules = items.compactMap { item in
                reader.string(item, what: "a rule id").map { ($0, reader.location(item)) }
            }
        }
        return Case(
            name: name,
            readings: readings,
            until: until,
            expected: expected,
            location: reader.location(node),
            rules: rules
        )
    }

    private static func parseReadings(_ node: Node, reader: inout YAMLReader) -> [Reading] {
        guard
            let entries = reader.mapping(
                node,
                what: "a reading",
                allowed: readingKeys
            )
        else { return [] }
        guard let atEntry = entries["at"], let at = reader.duration(atEntry.value, what: "'at'") else {
            if entries["at"] == nil, !YAMLReader.misspells("at", in: node, allowed: readingKeys) {
                reader.error(node, "a reading needs 'at:' (an offset such as 10s)")
            }
            return []
        }
        guard let topicEntry = entries["topic"], let topic = reader.string(topicEntry.value, what: "'topic'") else {
            if entries["topic"] == nil, !YAMLReader.misspells("topic", in: node, allowed: readingKeys) {
                reader.error(node, "a reading needs 'topic:'")
            }
            return []
        }
        if let valuesEntry = entries["values"] {
            guard entries["payload"] == nil else {
                reader.error(valuesEntry.key, "a reading has either 'payload' or 'values', not both")
                return []
            }
            guard let everyEntry = entries["every"], let every = reader.duration(everyEntry.value, what: "'every'")
            else {
                if entries["every"] == nil { reader.error(valuesEntry.key, "'values' needs 'every:' (the interval)") }
                return []
            }
            guard let items = reader.sequence(valuesEntry.value, what: "'values'") else { return [] }
            var readings: [Reading] = []
            for (index, item) in items.enumerated() {
                guard let value = reader.json(item, what: "a value") else { continue }
                readings.append(
                    Reading(
                        topic: topic,
                        payload: RenderedAction.payloadBytes(value),
                        timestamp: at + Int64(index) * every
                    )
                )
            }
            return readings
        }
        guard let payloadEntry = entries["payload"], let payload = reader.json(payloadEntry.value, what: "'payload'")
        else {
            let misspelled = ["payload", "values"].contains { YAMLReader.misspells($0, in: node, allowed: readingKeys) }
            if entries["payload"] == nil, !misspelled { reader.error(node, "a reading needs 'payload:' or 'values:'") }
            return []
        }
        return [Reading(topic: topic, payload: RenderedAction.payloadBytes(payload), timestamp: at)]
    }

    private static func parseExpectation(_ node: Node, reader: inout YAMLReader) -> Expectation? {
        guard
            let entries = reader.mapping(
                node,
                what: "an expected transition",
                allowed: expectationKeys
            )
        else { return nil }
        guard let atEntry = entries["at"], let at = reader.duration(atEntry.value, what: "'at'"),
            let ruleEntry = entries["rule"], let rule = reader.string(ruleEntry.value, what: "'rule'"),
            let transitionEntry = entries["transition"],
            let transitionText = reader.string(transitionEntry.value, what: "'transition'")
        else {
            let misspelled = ["at", "rule", "transition"].contains {
                entries[$0] == nil && YAMLReader.misspells($0, in: node, allowed: expectationKeys)
            }
            if !misspelled { reader.error(node, "an expected transition needs 'at', 'rule' and 'transition'") }
            return nil
        }
        guard let transition = TransitionKind(rawValue: transitionText) else {
            reader.error(transitionEntry.value, "transition must be fire or clear")
            return nil
        }
        var labels: [String: String]?
        if let entry = entries["labels"], case .object(let pairs)? = reader.json(entry.value, what: "'labels'") {
            labels = Dictionary(pairs.map { ($0.key, $0.value.textValue) }, uniquingKeysWith: { $1 })
        }
        var conditions: [(key: String, value: JSONValue)]?
        if let entry = entries["conditions"] {
            if case .object(let pairs)? = reader.json(entry.value, what: "'conditions'") {
                conditions = pairs
            } else {
                reader.error(entry.value, "'conditions' must map leaf names or topics to values")
            }
        }
        var members: [String]?
        if let entry = entries["members"], let items = reader.sequence(entry.value, what: "'members'") {
            members = items.compactMap { reader.string($0, what: "a member") }.sorted()
        }
        return Expectation(
            at: at,
            rule: rule,
            transition: transition,
            labels: labels,
            topic: entries["topic"].flatMap { reader.string($0.value, what: "'topic'") },
            payload: entries["payload"].flatMap { reader.json($0.value, what: "'payload'") },
            log: entries["log"].flatMap { reader.string($0.value, what: "'log'") },
            webhook: entries["webhook"].flatMap { reader.string($0.value, what: "'webhook'") },
            conditions: conditions,
            members: members,
            value: entries["value"].flatMap { reader.json($0.value, what: "'value'") },
            location: reader.location(ruleEntry.value)
        )
    }

    /// Runs every case against `ruleSet`.
    public func run(with ruleSet: RuleSet) -> [Result] {
        cases.map { testCase in
            let end = max(
                testCase.until ?? .min,
                testCase.readings.last?.timestamp ?? 0,
                testCase.expected.map(\.at).max() ?? 0
            )
            let outcome = Replay.run(ruleSet, readings: testCase.readings, end: end)
            var actual = outcome.transitions
            if let scope = testCase.rules {
                let problems = RuleTestSuite.scopeProblems(testCase, scope: scope, ruleSet: ruleSet)
                guard problems.isEmpty else {
                    return Result(name: testCase.name, passed: false, report: problems.joined(separator: "\n"))
                }
                actual.removeAll { record in !scope.contains { $0.id == record.ruleID } }
            }
            var passed = actual.count == testCase.expected.count
            if passed {
                for (expectation, record) in zip(testCase.expected, actual)
                where !RuleTestSuite.matches(expectation, record, actions: outcome.actions) {
                    passed = false
                }
            }
            let notes = outcome.flapping.compactMap { event -> String? in
                guard case .flapping(let rule, let labels, let time, let isFlapping, let percent) = event else {
                    return nil
                }
                let instance = labels.isEmpty ? "" : " " + labels.map(\.description).joined(separator: ",")
                return "\(RuleDuration.format(time)) \(rule)\(instance) \(isFlapping ? "started" : "stopped") flapping "
                    + "(\(JSONValue.format(percent.rounded())) % of its last results changed)"
            }
            return Result(
                name: testCase.name,
                passed: passed,
                report: passed ? "" : RuleTestSuite.sideBySide(testCase.expected, actual),
                notes: notes
            )
        }
    }

    /// What is wrong with a test's `rules:`: ids the rule files do not define, and expectations of rules outside it.
    static func scopeProblems(
        _ testCase: Case,
        scope: [(id: String, location: SourceLocation)],
        ruleSet: RuleSet
    ) -> [String] {
        let known = ruleSet.rules.map(\.id)
        let unknown = scope.filter { !known.contains($0.id) }.map { id, location in
            let hint = YAMLReader.closest(to: id, in: known).map { " (did you mean '\($0)'?)" } ?? ""
            return "\(location): error: rule '\(id)' is not in the rule files\(hint)"
        }
        // A misspelled id would make every expectation of the rule meant an error too: say only the first.
        guard unknown.isEmpty else { return unknown }
        let ids = scope.map(\.id)
        return testCase.expected.filter { !ids.contains($0.rule) }.map { expectation in
            "\(expectation.location): error: this test checks only rules [\(ids.joined(separator: ", "))], not "
                + "'\(expectation.rule)': add it to 'rules:'"
        }
    }

    /// Numbers compare to 1e-9 (a mean is rarely exact in binary); anything else exactly.
    static func sameValue(_ expected: JSONValue, _ actual: JSONValue?) -> Bool {
        if case .number(let wanted) = expected, case .number(let got)? = actual {
            return abs(wanted - got) <= 1e-9 * max(1, abs(wanted))
        }
        return expected == actual
    }

    static func matches(_ expectation: Expectation, _ record: TransitionRecord, actions: [FiredAction]) -> Bool {
        guard expectation.at == record.timestamp, expectation.rule == record.ruleID,
            expectation.transition == record.transition
        else { return false }
        if let labels = expectation.labels,
            labels != Dictionary(record.labels.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        {
            return false
        }
        for (key, expected) in expectation.conditions ?? [] {
            guard let condition = record.conditions.first(where: { $0.name == key || $0.topic == key }) else {
                return false
            }
            let actual = condition.truth == .unknown ? JSONValue.string("unknown") : condition.value ?? .null
            if actual != expected { return false }
        }
        if let value = expectation.value, !RuleTestSuite.sameValue(value, record.value) { return false }
        if let members = expectation.members,
            members != record.conditions.filter({ $0.truth == .true }).compactMap(\.name).sorted()
        {
            return false
        }
        let own = actions.filter {
            $0.timestamp == record.timestamp && $0.ruleID == record.ruleID && $0.labels == record.labels
                && $0.transition == record.transition
        }
        if let expectedURL = expectation.webhook {
            let found = own.contains { action in
                guard case .webhook(let url, let body, _) = action.action, url == expectedURL else { return false }
                return expectation.payload.map { body.contains($0) } ?? true
            }
            if !found { return false }
        } else if expectation.topic != nil || expectation.payload != nil {
            let found = own.contains { action in
                guard case .publish(let topic, let payload, _, _) = action.action else { return false }
                if let expectedTopic = expectation.topic, expectedTopic != topic { return false }
                if let expectedPayload = expectation.payload, !payload.contains(expectedPayload) { return false }
                return true
            }
            if !found { return false }
        }
        if let log = expectation.log {
            return own.contains { if case .log(let message) = $0.action { message == log } else { false } }
        }
        return true
    }

    /// A group's holding members, as an expectation names them.
    static func membersText(_ record: TransitionRecord) -> String {
        guard record.conditions.first?.isMember == true else { return "" }
        return " members "
            + record.conditions.filter { $0.truth == .true }.compactMap(\.name).sorted().joined(separator: ",")
    }

    static func sideBySide(_ expected: [Expectation], _ actual: [TransitionRecord]) -> String {
        let left = ["expected"] + expected.map(\.description)
        let right =
            ["actual"]
            + actual.map { record in
                "\(RuleDuration.format(record.timestamp)) \(record.transition.rawValue) \(record.ruleID)"
                    + (record.labels.isEmpty ? "" : " " + record.labels.map(\.description).joined(separator: ","))
                    + RuleTestSuite.membersText(record) + " (\(record.reason))"
            }
        let width = max(40, left.map(\.count).max() ?? 0)
        var lines: [String] = []
        for index in 0..<max(left.count, right.count) {
            let l = index < left.count ? left[index] : (index == left.count ? "(nothing more)" : "")
            let r = index < right.count ? right[index] : (index == right.count ? "(nothing more)" : "")
            let marker =
                index == 0 || (index < left.count && index < right.count && l.prefix(12) == r.prefix(12)) ? " " : "≠"
            lines.append("    \(marker) \(l.padding(toLength: width))  │ \(r)")
        }
        return lines.joined(separator: "\n")
    }
}

extension JSONValue {
    /// Whether `expected` is contained: objects by their given keys, everything else by equality.
    func contains(_ expected: JSONValue) -> Bool {
        guard case .object(let expectedPairs) = expected, case .object = self else { return self == expected }
        return expectedPairs.allSatisfy { pair in self[pair.key].map { $0.contains(pair.value) } ?? false }
    }

    /// A string's text, or the JSON of anything else.
    var textValue: String {
        if case .string(let text) = self { return text }
        return jsonText
    }
}

extension String {
    fileprivate func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}
