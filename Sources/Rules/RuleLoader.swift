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

    private static func parseRule(_ node: Node, zones: TimeZoneDatabase, reader: inout YAMLReader) -> Rule? {
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

        var severity = Rule.Severity.warning
        if let entry = entries["severity"], let text = reader.string(entry.value, what: "'severity'") {
            if let value = Rule.Severity(rawValue: text) {
                severity = value
            } else {
                reader.error(entry.value, "severity '\(text)' must be one of info, warning, critical")
            }
        }
        var onUnknown = Rule.UnknownPolicy.keep
        if let entry = entries["on_unknown"], let text = reader.string(entry.value, what: "'on_unknown'") {
            if let value = Rule.UnknownPolicy(rawValue: text) {
                onUnknown = value
            } else {
                reader.error(entry.value, "on_unknown '\(text)' must be one of keep, fire, clear")
            }
        }
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
        var outsideActive = Rule.OutsideActive.clear
        if let entry = entries["outside_active"], let text = reader.string(entry.value, what: "'outside_active'") {
            if let value = Rule.OutsideActive(rawValue: text) {
                outsideActive = value
            } else {
                reader.error(entry.value, "outside_active '\(text)' must be clear or hold")
            }
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

    /// A condition on one topic (`topic`, `field`, one threshold, `clear`, `stale`, `name`), from a rule's
    /// or a leaf's entries; `owner` names it in messages ("rule 'r'" or "a condition").
    private static func parseLeaf(
        _ entries: [String: (key: Node, value: Node)],
        node: Node,
        id: String,
        isLeaf: Bool = false,
        reader: inout YAMLReader
    ) -> Rule.Leaf? {
        let owner = isLeaf ? "a condition of rule '\(id)'" : "rule '\(id)'"
        var topic: TopicPattern?
        if let entry = entries["topic"], let text = reader.string(entry.value, what: "'topic'") {
            do {
                let pattern = try TopicPattern(parsing: text)
                topic = pattern
                for name in pattern.captureNames where payloadPlaceholders.contains(name) {
                    reader.error(entry.value, "capture '{\(name)}' uses a reserved name: rename it")
                }
            } catch {
                reader.error(entry.value, "invalid topic: \(error)")
            }
        } else if entries["topic"] == nil {
            reader.error(
                node,
                isLeaf ? "\(owner) has no 'topic'" : "rule '\(id)' has no 'topic' (nor 'all', 'any' or 'not')"
            )
        }

        var field = ["value"]
        if let entry = entries["field"], let text = reader.string(entry.value, what: "'field'") {
            let path = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            if path.contains(where: \.isEmpty) {
                reader.error(entry.value, "field '\(text)' must be a dotted path such as 'value' or 'data.temp'")
            }
            field = path
        }

        let condition = parseCondition(entries, rule: node, owner: owner, isLeaf: isLeaf, reader: &reader)

        var clear: Double?
        if let entry = entries["clear"], let value = reader.number(entry.value, what: "'clear'") {
            clear = value
            switch condition {
            case .above(let threshold) where value > threshold:
                reader.error(
                    entry.value,
                    "clear \(JSONValue.format(value)) is above the 'above' threshold \(JSONValue.format(threshold)): "
                        + "it must be at or below it (the rule clears when the value falls to it)"
                )
            case .below(let threshold) where value < threshold:
                reader.error(
                    entry.value,
                    "clear \(JSONValue.format(value)) is below the 'below' threshold \(JSONValue.format(threshold)): "
                        + "it must be at or above it (the rule clears when the value rises to it)"
                )
            case .between, .outside, .equals, .staleOnly:
                reader.error(entry.value, "'clear' applies only to 'above' and 'below' conditions")
            default: break
            }
        }
        var stale: Int64?
        if let entry = entries["stale"] {
            stale = reader.duration(entry.value, what: "'stale'")
            if stale == 0 { reader.error(entry.value, "'stale' must be longer than 0") }
        }
        var name: String?
        if let entry = entries["name"], let text = reader.string(entry.value, what: "'name'") {
            if text.isEmpty || !text.utf8.allSatisfy(isIDByte) || text.contains(".") || text.contains("-") {
                reader.error(entry.value, "condition name '\(text)' may only hold letters, digits and '_'")
            } else if payloadPlaceholders.contains(text) || text == "count" {
                reader.error(entry.value, "condition name '\(text)' is a reserved placeholder: rename it")
            } else if let topic, topic.captureNames.contains(text) {
                reader.error(entry.value, "condition name '\(text)' is also a capture of its topic: rename it")
            }
            name = text
        }
        let window = parseWindow(entries, condition: condition, reader: &reader)
        var maxSamples = Rule.Window.defaultMaxSamples
        if let entry = entries["max_samples"], let value = reader.integer(entry.value, what: "'max_samples'") {
            if value < 1 {
                reader.error(entry.value, "'max_samples' must be at least 1")
            } else if window == nil {
                reader.error(
                    entry.key,
                    "'max_samples' without a window (avg, min, max, sum, count, rate, delta, at_least)"
                )
            }
            maxSamples = max(value, 1)
        }
        // `times` keeps only the moments it became true, one per opening at most: a door does not fill it.
        let keepsEveryReading = if case .times? = window { false } else { true }
        if let window, window.durationMilliseconds != nil, keepsEveryReading, entries["max_samples"] == nil {
            let bytes = maxSamples * MemoryLayout<WindowState.Sample>.stride
            reader.warning(
                at: reader.location(node),
                "\(owner): the window '\(window)' keeps every reading within it, up to the default "
                    + "max_samples=\(maxSamples) per instance (\(RuleSet.byteText(bytes))): 1,000 instances × "
                    + "\(maxSamples) samples = up to \(RuleSet.byteText(bytes * 1000)); past it the oldest reading "
                    + "is dropped and counted, and the window's value is unknown while a dropped reading would still be "
                    + "inside it. State 'max_samples' (the most readings its span can hold) to bound it"
            )
        }
        if let window, case .readings(let count) = window.span, count > maxSamples {
            reader.error(
                at: reader.location(node),
                "the window '\(window)' needs \(count) readings but 'max_samples' is \(maxSamples): raise 'max_samples'"
            )
        }
        if case .atLeast? = window, let entry = entries["clear"] {
            reader.error(entry.key, "'clear' does not go with 'at_least': it clears when fewer than M readings hold")
        }
        if case .times? = window, let entry = entries["clear"] {
            reader.error(
                entry.key,
                "'clear' does not go with 'times': it clears when it became true fewer than M times"
            )
        }
        guard let topic, let condition else { return nil }
        return Rule.Leaf(
            topic: topic,
            field: field,
            condition: condition,
            clear: clear,
            staleMilliseconds: stale,
            name: name,
            window: window,
            maxSamples: maxSamples,
            location: reader.location(node)
        )
    }

    /// One element of `all`/`any` or the one of `not`: a leaf, or another `all`/`any`/`not`.
    private static func parseCombination(
        key: String,
        _ node: Node,
        leaves: inout [Rule.Leaf],
        id: String,
        reader: inout YAMLReader
    ) -> Rule.Combination? {
        if key == "not" {
            if case .sequence = node {
                reader.error(node, "'not' takes one condition (a mapping), not a list: wrap a list in 'all' or 'any'")
                return nil
            }
            return parseElement(node, leaves: &leaves, id: id, reader: &reader).map(Rule.Combination.not)
        }
        guard let items = reader.sequence(node, what: "'\(key)'") else { return nil }
        guard !items.isEmpty else {
            reader.error(node, "'\(key)' is empty: it needs at least one condition")
            return nil
        }
        var elements: [Rule.Combination] = []
        var valid = true
        for item in items {
            if let element = parseElement(item, leaves: &leaves, id: id, reader: &reader) {
                elements.append(element)
            } else {
                valid = false
            }
        }
        guard valid else { return nil }
        return key == "all" ? .all(elements) : .any(elements)
    }

    private static func parseElement(
        _ node: Node,
        leaves: inout [Rule.Leaf],
        id: String,
        reader: inout YAMLReader
    ) -> Rule.Combination? {
        guard case .mapping(let mapping) = node else {
            reader.error(
                node,
                "a condition must be a mapping (topic and threshold, or all/any/not), not \(YAMLReader.kind(node))"
            )
            return nil
        }
        let nested = mapping.keys.compactMap { $0.scalar?.string }.filter { combinationKeys.contains($0) }
        if let key = nested.first {
            guard let entries = reader.mapping(node, what: "a condition", allowed: combinationKeys) else { return nil }
            guard nested.count == 1, let entry = entries[key] else {
                reader.error(node, "a condition has one of 'all', 'any', 'not': nest one inside the other")
                return nil
            }
            return parseCombination(key: key, entry.value, leaves: &leaves, id: id, reader: &reader)
        }
        guard let entries = reader.mapping(node, what: "a condition", allowed: leafKeys + combinationKeys) else {
            return nil
        }
        guard let leaf = parseLeaf(entries, node: node, id: id, isLeaf: true, reader: &reader) else { return nil }
        leaves.append(leaf)
        return .leaf(leaves.count - 1)
    }

    /// Instances join on capture names: some leaf must capture them all, or every combination of values
    /// would be an instance.
    private static func checkJoin(_ leaves: [Rule.Leaf], rule: Node, id: String, reader: inout YAMLReader) {
        let names = Rule.captureNames(leaves: leaves, grouping: nil)
        guard !leaves.contains(where: { Set($0.topic.captureNames) == Set(names) }) else { return }
        let listed = names.map { "{\($0)}" }.joined(separator: ", ")
        reader.error(
            rule,
            "rule '\(id)': no condition captures every name of the rule (\(listed)), so its instances would be "
                + "every combination of the values; capture them all in one topic, or split the rule"
        )
    }

    private static func checkLeafNames(_ leaves: [Rule.Leaf], reader: inout YAMLReader) {
        var seen: [String: SourceLocation] = [:]
        let captures = Set(leaves.flatMap(\.topic.captureNames))
        for leaf in leaves {
            guard let name = leaf.name else { continue }
            if let first = seen[name] {
                reader.error(at: leaf.location, "condition name '\(name)' is used twice (first at \(first))")
            } else if captures.contains(name) {
                reader.error(at: leaf.location, "condition name '\(name)' is also a capture of the rule: rename it")
            }
            seen[name] = leaf.location
        }
    }

    /// `group_by` and `match` of a single-condition rule.
    private static func parseGrouping(
        _ entries: [String: (key: Node, value: Node)],
        leaf: Rule.Leaf?,
        reader: inout YAMLReader
    ) -> Rule.Grouping? {
        guard let groupEntry = entries["group_by"] else {
            if let matchEntry = entries["match"] {
                reader.error(
                    matchEntry.key,
                    "'match' without 'group_by': name the captures that make one group, e.g. 'group_by: [tank]'"
                )
            }
            return nil
        }
        var names: [String] = []
        if case .scalar = groupEntry.value, let name = reader.string(groupEntry.value, what: "'group_by'") {
            names = [name]
        } else if let items = reader.sequence(groupEntry.value, what: "'group_by'") {
            for item in items {
                guard let name = reader.string(item, what: "a 'group_by' name") else { continue }
                let available = leaf?.topic.captureNames ?? []
                if let leaf, !available.contains(name) {
                    let hint = YAMLReader.closest(to: name, in: available).map { " (did you mean '\($0)'?)" } ?? ""
                    reader.error(
                        item,
                        "group_by '\(name)' is not captured by the topic '\(leaf.topic.description)'\(hint)"
                    )
                } else if names.contains(name) {
                    reader.error(item, "group_by names '\(name)' twice")
                }
                names.append(name)
            }
        }
        var match = Rule.Match.any
        if let matchEntry = entries["match"], let text = reader.string(matchEntry.value, what: "'match'") {
            let words = text.split(separator: " ")
            if text == "any" {
                match = .any
            } else if text == "all" {
                match = .all
            } else if words.count == 2, words[0] == "at_least", let count = Int(words[1]), count > 0 {
                match = .atLeast(count)
            } else {
                reader.error(matchEntry.value, "match '\(text)' must be any, all or 'at_least N' (N above 0)")
            }
        }
        return Rule.Grouping(captureNames: names, match: match)
    }

    private static func parseCondition(
        _ entries: [String: (key: Node, value: Node)],
        rule: Node,
        owner: String,
        isLeaf: Bool,
        reader: inout YAMLReader
    ) -> Rule.Condition? {
        let present = conditionKeys.filter { entries[$0] != nil }
        guard let name = present.first, let entry = entries[name] else {
            // `stale` alone: the rule fires when the sensor goes silent (Prometheus' `absent`).
            if !isLeaf, let stale = entries["stale"] {
                if let window = windowKeys.first(where: { entries[$0] != nil }), let entry = entries[window] {
                    reader.error(entry.key, "'\(window)' needs a threshold to compare its value with")
                    return nil
                }
                if let entry = entries["group_by"] {
                    reader.error(entry.key, "a group votes on thresholds: 'stale' alone cannot go with 'group_by'")
                    return nil
                }
                _ = stale
                return .staleOnly
            }
            reader.error(
                rule,
                "\(owner) has no condition: add one of above, below, between, outside, equals"
                    + (isLeaf ? "" : " (or 'stale' alone, for a sensor that went silent)")
            )
            return nil
        }
        if present.count > 1, let second = entries[present[1]] {
            reader.error(
                second.key,
                "\(owner) has two conditions ('\(present[0])' and '\(present[1])'): keep exactly one"
            )
            for name in present where ["above", "below"].contains(name) {
                _ = entries[name].map { reader.number($0.value, what: "'\(name)'") }
            }
            return nil
        }
        switch name {
        case "above": return reader.number(entry.value, what: "'above'").map(Rule.Condition.above)
        case "below": return reader.number(entry.value, what: "'below'").map(Rule.Condition.below)
        case "between", "outside":
            guard let items = reader.sequence(entry.value, what: "'\(name)'"), items.count == 2 else {
                if case .sequence = entry.value {
                    reader.error(entry.value, "'\(name)' needs exactly two numbers: [low, high]")
                }
                return nil
            }
            guard let low = reader.number(items[0], what: "the low end of '\(name)'"),
                let high = reader.number(items[1], what: "the high end of '\(name)'")
            else { return nil }
            guard low < high else {
                reader.error(
                    entry.value,
                    "'\(name)' needs low < high, got [\(JSONValue.format(low)), \(JSONValue.format(high))]"
                )
                return nil
            }
            return name == "between" ? .between(low, high) : .outside(low, high)
        default:
            guard case .scalar = entry.value, let value = reader.json(entry.value, what: "'equals'"), value != .null
            else {
                reader.error(entry.value, "'equals' must be a number, a string or true/false")
                return nil
            }
            return .equals(value)
        }
    }

    /// The one window key of a condition (`avg: 5m`, `rate: {per: 1m, over: 5m}`, `at_least: 3 of 5`…).
    private static func parseWindow(
        _ entries: [String: (key: Node, value: Node)],
        condition: Rule.Condition?,
        reader: inout YAMLReader
    ) -> Rule.Window? {
        let present = windowKeys.filter { entries[$0] != nil }
        guard let key = present.first, let entry = entries[key] else { return nil }
        if present.count > 1, let second = entries[present[1]] {
            reader.error(
                second.key,
                "a condition has at most one window: '\(present[0])' and '\(present[1])' both given"
            )
            return nil
        }
        if key != "at_least", key != "times", case .equals? = condition {
            reader.error(
                entry.key,
                "'\(key)' computes a number: it goes with above, below, between or outside, not with 'equals' "
                    + "(count matching readings with 'at_least', or how often it became true with 'times')"
            )
            return nil
        }
        func positiveDuration(_ node: Node, what: String) -> Int64? {
            guard let value = reader.duration(node, what: what) else { return nil }
            guard value > 0 else {
                reader.error(node, "\(what) must be longer than 0")
                return nil
            }
            return value
        }
        func span(_ node: Node) -> Rule.Window.Span? {
            if YAMLReader.tagName(node) == .int {
                guard let count = reader.integer(node, what: "'\(key)'") else { return nil }
                guard count > 0 else {
                    reader.error(node, "'\(key)' needs at least 1 reading")
                    return nil
                }
                return .readings(count)
            }
            return positiveDuration(node, what: "'\(key)'").map(Rule.Window.Span.duration)
        }
        switch key {
        case "rate":
            guard let fields = reader.mapping(entry.value, what: "'rate'", allowed: ["per", "over"]) else { return nil }
            guard let perEntry = fields["per"], let overEntry = fields["over"] else {
                reader.error(entry.value, "'rate' needs 'per' and 'over', e.g. {per: 1m, over: 5m}")
                return nil
            }
            guard let per = positiveDuration(perEntry.value, what: "rate 'per'"),
                let over = positiveDuration(overEntry.value, what: "rate 'over'")
            else { return nil }
            return .rate(perMilliseconds: per, overMilliseconds: over)
        case "delta":
            return positiveDuration(entry.value, what: "'delta'").map(Rule.Window.delta)
        case "at_least":
            let text = entry.value.scalar?.string ?? ""
            let words = text.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count == 3, let count = Int(words[0]), count > 0, words[1] == "of" || words[1] == "in" else {
                reader.error(
                    entry.value,
                    "at_least '\(text)' must look like '3 of 5' (readings) or '3 in 10m' (a duration)"
                )
                return nil
            }
            if words[1] == "of" {
                guard let total = Int(words[2]), total >= count else {
                    reader.error(entry.value, "at_least '\(text)': N in 'M of N' must be a whole number at least M")
                    return nil
                }
                return .atLeast(count, .readings(total))
            }
            guard let duration = RuleDuration.milliseconds(String(words[2])), duration > 0 else {
                reader.error(entry.value, "at_least '\(text)': '\(words[2])' is not a duration (use e.g. 10m)")
                return nil
            }
            return .atLeast(count, .duration(duration))
        case "times":
            let text = entry.value.scalar?.string ?? ""
            let words = text.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count == 3, let count = Int(words[0]), count > 0, words[1] == "in",
                let duration = RuleDuration.milliseconds(String(words[2])), duration > 0
            else {
                reader.error(
                    entry.value,
                    "times '\(text)' must look like '11 in 1h': how many times it became true (at least 1) within "
                        + "a duration"
                )
                return nil
            }
            return .times(count, duration)
        case "count":
            guard YAMLReader.tagName(entry.value) != .int else {
                reader.error(
                    entry.value,
                    "'count' takes a duration (how many readings came within it), not a number of readings"
                )
                return nil
            }
            return span(entry.value).map { .statistic(.count, $0) }
        default:
            return span(entry.value).map { .statistic(Rule.Window.Statistic(rawValue: key)!, $0) }
        }
    }

    /// `active: {days, from, to, timezone}`.
    private static func parseSchedule(_ node: Node, zones: TimeZoneDatabase, reader: inout YAMLReader) -> Rule.Schedule?
    {
        guard let entries = reader.mapping(node, what: "'active'", allowed: ["days", "from", "to", "timezone"]) else {
            return nil
        }
        var days = Set(0..<7)
        if let entry = entries["days"], let items = reader.sequence(entry.value, what: "'days'") {
            days = []
            for item in items {
                guard let name = reader.string(item, what: "a day") else { continue }
                guard let day = Rule.Schedule.dayNames.firstIndex(of: name.lowercased()) else {
                    let hint =
                        YAMLReader.closest(to: name.lowercased(), in: Rule.Schedule.dayNames).map {
                            " (did you mean '\($0)'?)"
                        } ?? ""
                    reader.error(item, "day '\(name)' must be one of mon, tue, wed, thu, fri, sat, sun\(hint)")
                    continue
                }
                days.insert(day)
            }
            if items.isEmpty { reader.error(entry.value, "'days' is empty: list the days the schedule starts on") }
        }
        func clock(_ key: String) -> Int? {
            guard let entry = entries[key] else {
                reader.error(node, "'active' needs '\(key)' (a local time such as \"08:00\")")
                return nil
            }
            let text = entry.value.scalar?.string ?? ""
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
            if parts.count >= 2, parts.count <= 3, parts.allSatisfy({ $0 != nil }) {
                let (hours, minutes, seconds) = (parts[0]!, parts[1]!, parts.count == 3 ? parts[2]! : 0)
                let total = hours * 3600 + minutes * 60 + seconds
                if (0..<60).contains(minutes), (0..<60).contains(seconds), hours >= 0,
                    total < 86_400 || (key == "to" && total == 86_400)
                {
                    return total
                }
            }
            reader.error(
                entry.value,
                "'\(key)' '\(text)' must be a local time HH:MM (00:00 to 23:59; 'to' may be 24:00)"
            )
            return nil
        }
        let from = clock("from")
        let to = clock("to")
        var zone = TimeZoneRules.utc
        if let entry = entries["timezone"], let name = reader.string(entry.value, what: "'timezone'") {
            if let found = zones.rules(named: name) {
                zone = found
            } else {
                reader.error(
                    entry.value,
                    "unknown time zone '\(name)': use an IANA name such as Europe/Berlin (\(zones.origin))"
                )
                return nil
            }
        }
        guard let from, let to else { return nil }
        guard from % 86_400 != to % 86_400 else {
            reader.error(node, "'from' and 'to' are the same time: leave 'active' out for a rule that is always active")
            return nil
        }
        guard !days.isEmpty else { return nil }
        return Rule.Schedule(days: days, fromSeconds: from, toSeconds: to, zone: zone)
    }

    /// `flapping: {history, low, high, state}`.
    private static func parseFlapDetection(_ node: Node, reader: inout YAMLReader) -> Rule.FlapDetection? {
        guard let entries = reader.mapping(node, what: "'flapping'", allowed: ["history", "low", "high", "state"])
        else {
            return nil
        }
        var detection = Rule.FlapDetection(history: 21, lowPercent: 20, highPercent: 30, state: .hold)
        if let entry = entries["history"], let value = reader.integer(entry.value, what: "flapping 'history'") {
            if (3...64).contains(value) {
                detection.history = value
            } else {
                reader.error(entry.value, "flapping 'history' must be 3 to 64 results, got \(value)")
            }
        }
        for key in ["low", "high"] {
            guard let entry = entries[key], let value = reader.number(entry.value, what: "flapping '\(key)'") else {
                continue
            }
            guard (0...100).contains(value) else {
                reader.error(entry.value, "flapping '\(key)' is a percentage of state changes: 0 to 100")
                continue
            }
            if key == "low" { detection.lowPercent = value } else { detection.highPercent = value }
        }
        if detection.lowPercent > detection.highPercent {
            reader.error(
                node,
                "flapping 'low' (\(JSONValue.format(detection.lowPercent))) is above 'high' (\(JSONValue.format(detection.highPercent)))"
            )
        }
        if let entry = entries["state"], let text = reader.string(entry.value, what: "flapping 'state'") {
            if let state = Rule.FlapDetection.HeldState(rawValue: text) {
                detection.state = state
            } else {
                reader.error(entry.value, "flapping state '\(text)' must be hold, fire or clear")
            }
        }
        return detection
    }

    private static func parseTransitionLimit(_ node: Node, reader: inout YAMLReader) -> Rule.TransitionLimit? {
        let text = node.scalar?.string ?? ""
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        var count: Int?
        var window: Int64? = 3_600_000
        if parts.count == 1 {
            count = Int(parts[0])
        } else if parts.count == 3, parts[1] == "per" {
            count = Int(parts[0])
            window = RuleDuration.milliseconds(String(parts[2]))
        }
        guard let count, count > 0, let window, window > 0 else {
            reader.error(node, "max_transitions '\(text)' must look like '6 per 1h' (a count above 0 per a duration)")
            return nil
        }
        return Rule.TransitionLimit(count: count, windowMilliseconds: window)
    }

    private static func parseActions(
        _ node: Node,
        what: String,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> [Action] {
        guard let items = reader.sequence(node, what: "'\(what)'") else { return [] }
        var actions: [Action] = []
        for item in items {
            guard
                let entries = reader.mapping(
                    item,
                    what: "an action in '\(what)'",
                    allowed: actionKeys
                )
            else { continue }
            let handlers = actionKeys.filter { entries[$0] != nil }
            guard !handlers.isEmpty else {
                reader.error(item, "an action needs a handler: one of publish, log, command, webhook")
                continue
            }
            let location = reader.location(item)
            let before = reader.diagnostics.count
            if handlers.count > 1 {
                reader.error(
                    item,
                    "an action has one handler; split '\(handlers.joined(separator: "' and '"))' into two actions"
                )
            }
            // Every handler is checked, so that one mistake does not hide the others.
            var handler: Action.Handler?
            for handlerName in handlers {
                guard let handlerEntry = entries[handlerName] else { continue }
                switch handlerName {
                case "publish":
                    handler = parsePublish(handlerEntry.value, captures: captures, names: names, reader: &reader)
                case "log": handler = parseLog(handlerEntry.value, captures: captures, names: names, reader: &reader)
                case "webhook":
                    handler = parseWebhook(handlerEntry.value, captures: captures, names: names, reader: &reader)
                default:
                    handler = parseCommand(handlerEntry.value, captures: captures, names: names, reader: &reader)
                }
            }
            if let handler, reader.diagnostics.count == before {
                actions.append(Action(handler: handler, location: location))
            }
        }
        return actions
    }

    private static func parsePublish(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> Action.Handler? {
        guard
            let entries = reader.mapping(
                node,
                what: "a publish action",
                allowed: ["topic", "payload", "qos", "retain"]
            )
        else { return nil }
        guard let topicEntry = entries["topic"] else {
            reader.error(node, "a publish action needs a 'topic'")
            return nil
        }
        guard let topicText = reader.string(topicEntry.value, what: "the action's topic") else { return nil }
        let topic = Template(topicText)
        let literal = topic.literalText
        if topicText.isEmpty || literal.contains("+") || literal.contains("#")
            || literal.unicodeScalars.contains(where: { $0.value < 0x20 })
        {
            reader.error(
                topicEntry.value,
                "action topic '\(topicText)' must be a plain topic: no '+', '#' or control characters"
            )
        }
        checkPlaceholders(
            topic,
            at: topicEntry.value,
            allowed: names + topicPlaceholders,
            captures: captures,
            reader: &reader
        )
        var payload: PayloadTemplate?
        if let payloadEntry = entries["payload"] {
            payload = payloadTemplate(payloadEntry.value, captures: captures, names: names, reader: &reader)
        }
        var qos = 1
        if let entry = entries["qos"], let value = reader.integer(entry.value, what: "'qos'") {
            if value > 2 { reader.error(entry.value, "'qos' must be 0, 1 or 2") }
            qos = value
        }
        let retain = entries["retain"].flatMap { reader.bool($0.value, what: "'retain'") } ?? false
        return .publish(topic: topic, payload: payload, qos: qos, retain: retain)
    }

    private static func parseLog(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> Action.Handler? {
        var messageNode = node
        if case .mapping = node {
            guard let entries = reader.mapping(node, what: "a log action", allowed: ["message"]),
                let entry = entries["message"]
            else {
                reader.error(node, "a log action needs a 'message'")
                return nil
            }
            messageNode = entry.value
        }
        guard let text = reader.string(messageNode, what: "a log message") else { return nil }
        let template = Template(text)
        checkPlaceholders(
            template,
            at: messageNode,
            allowed: names + actionPlaceholders,
            captures: captures,
            reader: &reader
        )
        return .log(message: template)
    }

    /// `webhook: {url, body, timeout}`: the URL (placeholders filled, percent-encoded) gets the body as JSON.
    private static func parseWebhook(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> Action.Handler? {
        guard let entries = reader.mapping(node, what: "a webhook action", allowed: ["url", "body", "timeout"]) else {
            return nil
        }
        guard let urlEntry = entries["url"] else {
            reader.error(node, "a webhook action needs a 'url' (https://host/path)")
            return nil
        }
        guard let text = reader.string(urlEntry.value, what: "the webhook's url") else { return nil }
        let url = Template(text)
        let lowered = text.lowercased()
        if !(lowered.hasPrefix("https://") || lowered.hasPrefix("http://")) || text.count <= "https://".count
            || url.literalText.unicodeScalars.contains(where: { $0.value <= 0x20 })
        {
            reader.error(urlEntry.value, "webhook url '\(text)' must be an http:// or https:// URL without spaces")
        } else if text.drop(while: { $0 != "/" }).dropFirst(2).prefix(while: { $0 != "/" }).contains("{") {
            reader.error(urlEntry.value, "webhook url '\(text)': placeholders go in the path or query, not the host")
        }
        checkPlaceholders(
            url,
            at: urlEntry.value,
            allowed: names + actionPlaceholders,
            captures: captures,
            reader: &reader
        )
        let body = entries["body"].flatMap {
            payloadTemplate($0.value, captures: captures, names: names, reader: &reader)
        }
        var timeout: Int64 = 5_000
        if let entry = entries["timeout"], let value = reader.duration(entry.value, what: "'timeout'") {
            if value <= 0 { reader.error(entry.value, "'timeout' must be longer than 0") }
            timeout = value
        }
        return .webhook(url: url, body: body, timeoutMilliseconds: timeout)
    }

    private static func parseCommand(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> Action.Handler? {
        var argumentsNode = node
        var timeout: Int64 = 10_000
        if case .mapping = node {
            guard let entries = reader.mapping(node, what: "a command action", allowed: ["run", "timeout"]),
                let entry = entries["run"]
            else {
                reader.error(node, "a command action needs 'run: [program, arguments...]'")
                return nil
            }
            argumentsNode = entry.value
            if let timeoutEntry = entries["timeout"] {
                timeout = reader.duration(timeoutEntry.value, what: "'timeout'") ?? timeout
            }
        }
        guard let items = reader.sequence(argumentsNode, what: "a command"), !items.isEmpty else {
            reader.error(argumentsNode, "a command needs at least the program to run")
            return nil
        }
        var arguments: [Template] = []
        for item in items {
            guard let text = reader.string(item, what: "a command argument") else { continue }
            let template = Template(text)
            checkPlaceholders(
                template,
                at: item,
                allowed: names + actionPlaceholders,
                captures: captures,
                reader: &reader
            )
            arguments.append(template)
        }
        return .command(arguments: arguments, timeoutMilliseconds: timeout)
    }

    private static func payloadTemplate(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> PayloadTemplate? {
        switch node {
        case .scalar(let scalar):
            guard let value = reader.json(node, what: "the payload") else { return nil }
            guard case .string = value else { return .literal(value) }
            let template = Template(scalar.string)
            if template.placeholders.isEmpty { return .literal(value) }
            checkPlaceholders(
                template,
                at: node,
                allowed: names + actionPlaceholders,
                captures: captures,
                reader: &reader
            )
            return .string(template)
        case .sequence(let sequence):
            var items: [PayloadTemplate] = []
            for item in sequence {
                guard let template = payloadTemplate(item, captures: captures, names: names, reader: &reader) else {
                    return nil
                }
                items.append(template)
            }
            return .array(items)
        case .mapping(let mapping):
            var keys: [String] = []
            var values: [PayloadTemplate] = []
            for (key, value) in mapping {
                guard case .scalar(let scalar) = key else {
                    reader.error(key, "payload keys must be strings")
                    return nil
                }
                guard let template = payloadTemplate(value, captures: captures, names: names, reader: &reader) else {
                    return nil
                }
                keys.append(scalar.string)
                values.append(template)
            }
            return .object(keys, values)
        case .alias:
            reader.error(node, "payloads cannot use YAML aliases")
            return nil
        }
    }

    private static func checkPlaceholders(
        _ template: Template,
        at node: Node,
        allowed: [String],
        captures: [String],
        reader: inout YAMLReader
    ) {
        for name in template.placeholders where !allowed.contains(name) {
            let captured =
                captures.isEmpty ? "captures nothing" : "captures \(captures.map { "{\($0)}" }.joined(separator: ", "))"
            reader.error(
                node,
                "placeholder {\(name)} is not captured by the rule's topic (it \(captured); "
                    + "also available: \(allowed.filter { !captures.contains($0) }.map { "{\($0)}" }.joined(separator: ", ")))"
            )
        }
    }

    private static func isIDByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
            true
        default: false
        }
    }
}
