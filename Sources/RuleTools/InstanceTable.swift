import FileFormats
import Rules

/// The terminal table of `rules-engine explain`: one rule's instances as `/api/instances` serves them.
public enum InstanceTable {
    /// Renders `instances` (JSON objects from `/api/instances`) of `rule` (an object from `/api/rules`, if
    /// found) at wall time `now` (Unix ms).
    public static func render(ruleID: String, rule: JSONValue?, instances: [JSONValue], now: Int64) -> String {
        guard let rule else { return "rule \(ruleID): not loaded in this engine" }
        var lines = ["rule \(ruleID) (\(rule["source"].flatMap(\.stringValue) ?? "?")): \(conditionText(of: rule))"]
        guard !instances.isEmpty else {
            lines.append("no instances yet (no reading has matched the rule's topic)")
            return lines.joined(separator: "\n")
        }
        var rows = [["LABELS", "STATE", "SINCE", "LAST VALUE", "LAST READING", "NEXT TIMER", "LAST REASON"]]
        for instance in instances {
            defer { rows += conditionRows(of: instance, now: now) }
            let labels: String
            if case .object(let pairs)? = instance["labels"] {
                labels = pairs.map { "\($0.key)=\($0.value.stringValue ?? $0.value.jsonText)" }.joined(separator: ",")
            } else {
                labels = "-"
            }
            var state = instance["state"].flatMap(\.stringValue) ?? "?"
            if instance["stale"] == .bool(true) { state += " (stale)" }
            if instance["flapping"] == .bool(true) {
                var percent = "?"
                if case .number(let number)? = instance["flap_percent"] { percent = JSONValue.format(number.rounded()) }
                state += " (flapping \(percent) %)"
            }
            if instance["limited"] == .bool(true) { state += " (max_transitions)" }
            var value = instance["last_value"].map { $0 == .null ? "-" : $0.jsonText } ?? "-"
            if let window = instance["window"] { value = InstanceTable.windowText(window) }
            rows.append([
                labels.isEmpty ? "-" : labels,
                state,
                relative(instance["since"], now: now),
                value,
                relative(instance["last_reading_at"], now: now),
                relative(instance["next_timer_due"], now: now),
                instance["last_reason"].flatMap(\.stringValue) ?? "-",
            ])
        }
        lines.append(table(rows))
        return lines.joined(separator: "\n")
    }

    /// What `explain` without a rule id prints: every loaded rule (objects from `/api/rules`) with how many
    /// instances it has in each state (from `/api/instances`), its source and its condition.
    public static func ruleList(rules: [JSONValue], instances: [JSONValue]) -> String {
        var counts: [String: [String: Int]] = [:]
        for instance in instances {
            guard let rule = instance["rule"]?.stringValue, let state = instance["state"]?.stringValue else { continue }
            counts[rule, default: [:]][state, default: 0] += 1
        }
        var rows = [["RULE", "INSTANCES", "FIRING", "PENDING", "SOURCE", "CONDITION"]]
        for rule in rules {
            let id = rule["id"].flatMap(\.stringValue) ?? "?"
            let states = counts[id] ?? [:]
            rows.append([
                id, String(states.values.reduce(0, +)), String(states["firing"] ?? 0), String(states["pending"] ?? 0),
                rule["source"].flatMap(\.stringValue) ?? "?", conditionText(of: rule),
            ])
        }
        return table(rows)
    }

    /// The message for a rule id the engine does not have, with the ids it has (`rules` from `/api/rules`).
    public static func unknownRule(_ ruleID: String, rules: [JSONValue]) -> String {
        let loaded = rules.compactMap { $0["id"].flatMap(\.stringValue) }
        let list = loaded.isEmpty ? "it has no rules" : "its rules are: " + loaded.joined(separator: ", ")
        return
            "rule \(ruleID): not loaded in this engine; \(list) (`rules-engine explain` lists them with their states)"
    }

    /// A rule's condition in one line: topic, threshold, clear level and `for`, or a combination's whole text.
    static func conditionText(of rule: JSONValue) -> String {
        let window = rule["window"].flatMap(\.stringValue).map { $0 + " " } ?? ""
        let condition =
            ["above", "below", "between", "outside", "equals"].compactMap { key in
                rule[key].map { "\(window)\(key) \($0.jsonText)" }
            }.first ?? rule["stale"].flatMap(\.stringValue).map { "no reading for \($0) (stale alone)" } ?? ""
        let clear = rule["clear"].flatMap { $0 == .null ? nil : "clear \($0.jsonText)" }
        let duration = rule["for"].flatMap(\.stringValue).flatMap { $0 == "0s" ? nil : "for \($0)" }
        let active = rule["active"].flatMap(\.stringValue).map { "active \($0)" }
        let parts: [String?] =
            if let combined = rule["condition"].flatMap(\.stringValue) {
                [combined, duration, active]
            } else {
                [rule["topic"].flatMap(\.stringValue), condition, clear, duration, active]
            }
        return parts.compactMap { $0 }.joined(separator: ", ")
    }

    /// Rows as aligned columns (the last column is not padded).
    static func table(_ rows: [[String]]) -> String {
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// A combined instance's leaves or a group's members, one row each under the instance: topic, truth
    /// (or why unknown), value, last reading.
    static func conditionRows(of instance: JSONValue, now: Int64) -> [[String]] {
        guard case .array(let conditions)? = instance["conditions"] ?? instance["members"] else { return [] }
        return conditions.map { condition in
            let name = condition["name"].flatMap(\.stringValue).map { "\($0) " } ?? ""
            let truth = condition["truth"].flatMap(\.stringValue) ?? "?"
            let why = condition["unknown_because"].flatMap(\.stringValue).map { " (\($0))" } ?? ""
            return [
                "  \(name)\(condition["topic"].flatMap(\.stringValue) ?? "?")",
                truth + why,
                "",
                condition["window"].map(InstanceTable.windowText)
                    ?? condition["value"].map { $0 == .null ? "-" : $0.jsonText } ?? "-",
                relative(condition["last_reading_at"], now: now),
                "",
                "",
            ]
        }
    }

    /// A window's value, what it is and how many readings it holds: `31.5 (avg 5m of 12)`.
    static func windowText(_ window: JSONValue) -> String {
        let value = window["value"].flatMap { $0 == .null ? nil : $0.jsonText } ?? "unknown"
        var samples = 0
        if case .number(let number)? = window["samples"] { samples = Int(number) }
        return "\(value) (\(window["window"].flatMap(\.stringValue) ?? "window") of \(samples))"
    }

    /// `3s ago`, `in 2s`, or `-`.
    static func relative(_ value: JSONValue?, now: Int64) -> String {
        guard case .number(let number)? = value else { return "-" }
        let difference = Int64(number) - now
        let text = RuleDuration.format(max(0, abs(difference) / 1000 * 1000))
        return difference > 0 ? "in \(text)" : "\(text) ago"
    }
}

extension JSONValue {
    /// The text of a string value.
    var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }
}
