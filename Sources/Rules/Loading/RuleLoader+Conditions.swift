import FileFormats
import Yams

// A rule's conditions: leaves, all/any/not, groups, thresholds and windows.
extension RuleLoader {
    /// A condition on one topic (`topic`, `field`, one threshold, `clear`, `stale`, `name`), from a rule's
    /// or a leaf's entries; `owner` names it in messages ("rule 'r'" or "a condition").
    static func parseLeaf(
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
    static func parseCombination(
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

    static func parseElement(
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
    static func checkJoin(_ leaves: [Rule.Leaf], rule: Node, id: String, reader: inout YAMLReader) {
        let names = Rule.captureNames(leaves: leaves, grouping: nil)
        guard !leaves.contains(where: { Set($0.topic.captureNames) == Set(names) }) else { return }
        let listed = names.map { "{\($0)}" }.joined(separator: ", ")
        reader.error(
            rule,
            "rule '\(id)': no condition captures every name of the rule (\(listed)), so its instances would be "
                + "every combination of the values; capture them all in one topic, or split the rule"
        )
    }

    static func checkLeafNames(_ leaves: [Rule.Leaf], reader: inout YAMLReader) {
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
    static func parseGrouping(
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

    static func parseCondition(
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
    static func parseWindow(
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
}
