import FileFormats
import Yams

/// Turns rule file texts into a validated `RuleSet`, reporting every problem with its position.
public enum RuleLoader {
    static let ruleKeys = [
        "id", "description", "topic", "field", "above", "below", "between", "outside", "equals", "clear", "for",
        "cooldown", "stale", "severity", "on_unknown", "min_on", "min_off", "max_transitions", "on_fire", "on_clear",
        "all", "any", "not", "group_by", "match", "avg", "min", "max", "sum", "count", "rate", "delta", "at_least",
        "times", "max_samples", "keep_firing_for", "active", "outside_active", "flapping",
    ]
    /// The window keys, at most one per condition.
    static let windowKeys = ["avg", "min", "max", "sum", "count", "rate", "delta", "at_least", "times"]
    static let conditionKeys = ["above", "below", "between", "outside", "equals"]
    static let combinationKeys = ["all", "any", "not"]
    /// The keys of one leaf of `all`/`any`/`not`.
    static let leafKeys = [
        "topic", "field", "above", "below", "between", "outside", "equals", "clear", "stale", "name", "avg", "min",
        "max", "sum", "count", "rate", "delta", "at_least", "times", "max_samples",
    ]
    /// The keys of a single condition that a combined rule puts on its leaves instead.
    static let singleConditionKeys = [
        "topic", "field", "above", "below", "between", "outside", "equals", "clear", "stale", "avg", "min", "max",
        "sum", "count", "rate", "delta", "at_least", "times", "max_samples",
    ]
    /// Placeholders every action may use besides the rule's captures.
    static let payloadPlaceholders = ["value", "rule", "threshold", "severity", "transition"]
    /// Also outside topics: `{reason}`, the transition's reason. Not reserved: a topic that captures `{reason}`
    /// (accepted before it existed) keeps its capture.
    static let actionPlaceholders = payloadPlaceholders + ["reason"]
    static let topicPlaceholders = ["rule"]
    /// The handlers an action may name.
    static let actionKeys = ["publish", "log", "command", "webhook"]

    /// Validates all sources together (ids must be unique across files); throws every problem found.
    /// `zones` resolves the IANA names that schedules use (`active: {timezone: …}`); without it only UTC is known.
    public static func load(
        _ sources: [RuleSource],
        zones: TimeZoneDatabase = .utcOnly
    ) throws(RuleLoadError) -> RuleSet {
        var rules: [Rule] = []
        var diagnostics: [RuleDiagnostic] = []
        var warnings: [RuleDiagnostic] = []
        var firstByID: [String: SourceLocation] = [:]
        for source in sources {
            let parsed = parse(source, zones: zones)
            rules += parsed.rules
            diagnostics += parsed.diagnostics
            warnings += parsed.warnings
            // Every declared id counts, valid rule or not, so a duplicate is reported together with other errors.
            for (id, location) in parsed.declaredIDs {
                if let first = firstByID[id] {
                    diagnostics.append(
                        RuleDiagnostic(location, "duplicate rule id '\(id)' (first defined at \(first))")
                    )
                } else {
                    firstByID[id] = location
                }
            }
        }
        guard diagnostics.isEmpty else { throw RuleLoadError(diagnostics: diagnostics.sorted()) }
        return RuleSet(rules: rules, warnings: warnings.sorted())
    }

    /// The `id:` values a file that is not valid YAML seems to declare (read line by line, block and flow
    /// style), so that a duplicate id is reported together with the syntax error.
    static func declaredIDs(inUnparsable source: RuleSource) -> [(String, SourceLocation)] {
        var found: [(String, SourceLocation)] = []
        for (offset, line) in source.text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = line.prefix { $0 != "#" }
            guard let match = text.firstMatch(of: /(?:^|[\s{,\-])id:\s*["']?([A-Za-z0-9_.\-]+)/) else { continue }
            let column = text.distance(from: text.startIndex, to: match.output.1.startIndex) + 1
            found.append(
                (String(match.output.1), SourceLocation(file: source.path, line: offset + 1, column: column))
            )
        }
        return found
    }

    /// Parses one file: the rules that are valid and the problems of the others.
    public static func parse(
        _ source: RuleSource,
        zones: TimeZoneDatabase = .utcOnly
    ) -> (
        rules: [Rule], diagnostics: [RuleDiagnostic], warnings: [RuleDiagnostic],
        declaredIDs: [(String, SourceLocation)]
    ) {
        var reader = YAMLReader(file: source.path)
        guard let root = reader.compose(source.text) else {
            if reader.diagnostics.isEmpty {
                // Most likely a truncated write: loading it would silently remove every rule of the file.
                reader.error(nil, "the file has no content (a truncated write?); write 'rules: []' for no rules")
            }
            return ([], reader.diagnostics, [], declaredIDs(inUnparsable: source))
        }
        guard let top = reader.mapping(root, what: "a rule file", allowed: ["rules"]) else {
            return ([], reader.diagnostics, [], [])
        }
        guard let list = top["rules"] else {
            reader.error(root, "a rule file needs a top-level 'rules:' list")
            return ([], reader.diagnostics, [], [])
        }
        if case .scalar = list.value, YAMLReader.tagName(list.value) == .null {
            reader.error(list.value, "'rules:' is empty (a truncated write?); write 'rules: []' for no rules")
            return ([], reader.diagnostics, [], [])
        }
        guard let items = reader.sequence(list.value, what: "'rules'") else { return ([], reader.diagnostics, [], []) }
        var rules: [Rule] = []
        var declaredIDs: [(String, SourceLocation)] = []
        for item in items {
            let before = reader.diagnostics.count
            if case .mapping(let mapping) = item, let id = mapping["id"]?.scalar?.string {
                declaredIDs.append((id, reader.location(item)))
            }
            if let rule = parseRule(item, zones: zones, reader: &reader), reader.diagnostics.count == before {
                rules.append(rule)
            }
        }
        return (rules, reader.diagnostics, reader.warnings, declaredIDs)
    }

    static func parseRule(_ node: Node, zones: TimeZoneDatabase, reader: inout YAMLReader) -> Rule? {
        guard let entries = reader.mapping(node, what: "a rule", allowed: ruleKeys) else { return nil }
        let location = reader.location(node)

        var id = "?"
        if let entry = entries["id"], let text = reader.string(entry.value, what: "'id'") {
            if text.isEmpty || !text.utf8.allSatisfy(isIDByte) {
                reader.error(entry.value, "rule id '\(text)' may only hold letters, digits, '_', '.' and '-'")
            }
            id = text
        } else if entries["id"] == nil {
            reader.error(node, "rule has no 'id'")
        }

        let (leaves, combination, grouping, conditionIsValid) = parseConditions(
            entries,
            node: node,
            id: id,
            reader: &reader
        )
        checkLeafNames(leaves, reader: &reader)
        let captures = Rule.captureNames(leaves: leaves, grouping: grouping)
        // A group's actions may also say `{count}`, the number of members holding.
        let actionNames = captures + leaves.compactMap(\.name) + (grouping == nil ? [] : ["count"])

        func duration(_ key: String) -> Int64? {
            guard let entry = entries[key] else { return nil }
            return reader.duration(entry.value, what: "'\(key)'")
        }
        let forMilliseconds = duration("for") ?? 0
        let cooldown = duration("cooldown") ?? 0
        let minOn = duration("min_on") ?? 0
        let minOff = duration("min_off") ?? 0

        let severity = word(entries, "severity", default: Rule.Severity.warning, reader: &reader)
        let onUnknown = word(entries, "on_unknown", default: Rule.UnknownPolicy.keep, reader: &reader)
        var maxTransitions: Rule.TransitionLimit?
        if let entry = entries["max_transitions"] {
            maxTransitions = parseTransitionLimit(entry.value, reader: &reader)
        }

        let onFire =
            entries["on_fire"].map {
                parseActions($0.value, what: "on_fire", captures: captures, names: actionNames, reader: &reader)
            } ?? []
        let onClear =
            entries["on_clear"].map {
                parseActions($0.value, what: "on_clear", captures: captures, names: actionNames, reader: &reader)
            } ?? []

        let keepFiringFor = duration("keep_firing_for") ?? 0
        let schedule = entries["active"].flatMap { parseSchedule($0.value, zones: zones, reader: &reader) }
        let outsideActive = word(entries, "outside_active", default: Rule.OutsideActive.clear, reader: &reader)
        if let entry = entries["outside_active"] {
            if entries["active"] == nil {
                reader.error(
                    entry.key,
                    "'outside_active' without 'active': it says what happens when the schedule ends"
                )
            }
        }
        let flapping = entries["flapping"].flatMap { parseFlapDetection($0.value, reader: &reader) }

        guard conditionIsValid, !leaves.isEmpty else { return nil }
        var rule = Rule(
            id: id,
            description: entries["description"].flatMap { reader.string($0.value, what: "'description'") },
            leaves: leaves,
            combination: combination,
            grouping: grouping,
            forMilliseconds: forMilliseconds,
            cooldownMilliseconds: cooldown,
            severity: severity,
            onUnknown: onUnknown,
            minOnMilliseconds: minOn,
            minOffMilliseconds: minOff,
            maxTransitions: maxTransitions,
            onFire: onFire,
            onClear: onClear,
            location: location
        )
        rule.keepFiringForMilliseconds = keepFiringFor
        rule.schedule = schedule
        rule.outsideActive = outsideActive
        rule.flapping = flapping
        return rule
    }

    /// One of the words of `Value` at `key` (`severity: critical`), or `fallback` when the key is absent or wrong.
    static func word<Value: RawRepresentable & CaseIterable>(
        _ entries: [String: (key: Node, value: Node)],
        _ key: String,
        default fallback: Value,
        reader: inout YAMLReader
    ) -> Value where Value.RawValue == String {
        guard let entry = entries[key], let text = reader.string(entry.value, what: "'\(key)'") else { return fallback }
        if let value = Value(rawValue: text) { return value }
        let words = Value.allCases.map(\.rawValue)
        let choice =
            words.count == 2 ? "\(words[0]) or \(words[1])" : "one of \(words.joined(separator: ", "))"
        reader.error(entry.value, "\(key) '\(text)' must be \(choice)")
        return fallback
    }

    /// A rule's condition: one leaf (`topic:` with a threshold, maybe grouped), or `all`/`any`/`not` of leaves;
    /// whether it is valid enough to make a rule.
    static func parseConditions(
        _ entries: [String: (key: Node, value: Node)],
        node: Node,
        id: String,
        reader: inout YAMLReader
    ) -> (leaves: [Rule.Leaf], combination: Rule.Combination?, grouping: Rule.Grouping?, isValid: Bool) {
        let combinationNames = combinationKeys.filter { entries[$0] != nil }
        var leaves: [Rule.Leaf] = []
        var combination: Rule.Combination?
        var grouping: Rule.Grouping?
        var conditionIsValid = true
        if combinationNames.isEmpty {
            if let leaf = parseLeaf(entries, node: node, id: id, reader: &reader) {
                leaves = [leaf]
            } else {
                conditionIsValid = false
            }
            grouping = parseGrouping(entries, leaf: leaves.first, reader: &reader)
        } else {
            for key in singleConditionKeys + ["group_by", "match"] {
                guard let entry = entries[key] else { continue }
                let advice =
                    ["group_by", "match"].contains(key)
                    ? "'group_by' and 'match' go with a single condition ('topic:'), not with '\(combinationNames[0])'"
                    : "a rule with '\(combinationNames[0])' has its '\(key)' on each of its conditions"
                reader.error(entry.key, "'\(key)' beside '\(combinationNames[0])': \(advice)")
                conditionIsValid = false
            }
            if combinationNames.count > 1, let second = entries[combinationNames[1]] {
                reader.error(
                    second.key,
                    "rule '\(id)' has both '\(combinationNames[0])' and '\(combinationNames[1])': "
                        + "nest one inside the other"
                )
                conditionIsValid = false
            } else if let entry = entries[combinationNames[0]] {
                combination = parseCombination(
                    key: combinationNames[0],
                    entry.value,
                    leaves: &leaves,
                    id: id,
                    reader: &reader
                )
                if combination == nil { conditionIsValid = false }
            }
            if combination != nil { checkJoin(leaves, rule: node, id: id, reader: &reader) }
        }
        return (leaves, combination, grouping, conditionIsValid)
    }

    static func isIDByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
            true
        default: false
        }
    }
}
