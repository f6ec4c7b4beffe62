import FileFormats
import Yams

// What a rule does over time besides its condition: schedules, flap detection, transition limits.
extension RuleLoader {
    /// `active: {days, from, to, timezone}`.
    static func parseSchedule(_ node: Node, zones: TimeZoneDatabase, reader: inout YAMLReader) -> Rule.Schedule? {
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
    static func parseFlapDetection(_ node: Node, reader: inout YAMLReader) -> Rule.FlapDetection? {
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

    static func parseTransitionLimit(_ node: Node, reader: inout YAMLReader) -> Rule.TransitionLimit? {
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
}
