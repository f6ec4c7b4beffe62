import FileFormats

extension Evaluator {

    static func decode(_ payload: [UInt8]) -> JSONValue {
        if let value = JSONValue(parsing: payload) { return value }
        // Not JSON: a raw text payload (`open`, `ON`), usable by `equals` rules on strings.
        return .string(String(decoding: payload, as: UTF8.self).trimmingWhitespace())
    }

    /// The field's value when it has the type the rule needs (`missingField`'s name is filled in by the caller).
    static func check(_ found: JSONValue?, core: RuleCore) -> Result<JSONValue, ReadingProblem> {
        check(found, core: core.condition)
    }

    /// The field's value when it has the type the condition needs.
    static func check(_ found: JSONValue?, core: ConditionCore) -> Result<JSONValue, ReadingProblem> {
        guard let value = found else { return .failure(.missingField("")) }
        switch core.valueType {
        case .number:
            guard case .number = value else { return .failure(.notANumber) }
        case .string:
            guard case .string = value else { return .failure(.typeMismatch) }
        case .bool:
            guard case .bool = value else { return .failure(.typeMismatch) }
        case .any:
            break
        }
        return .success(value)
    }

    static func labels(of instance: Instance, rule: Rule) -> [Label] {
        zip(rule.captureNames, instance.labels).map { Label(name: $0, value: $1) }
    }

    static func reasonText(
        _ instance: Instance,
        problem lastProblem: ReadingProblem?,
        rule: Rule,
        kind: TransitionKind
    ) -> String {
        if instance.stale, let stale = rule.staleMilliseconds {
            return kind == .fire ? "no reading for \(RuleDuration.format(stale)) (stale)" : "readings resumed"
        }
        if instance.lastReadingAt == nil
            || (lastProblem != nil && rule.onUnknown != .keep
                && kind == (rule.onUnknown == .fire ? .fire : .clear))
        {
            if let problem = lastProblem {
                return "unusable reading: \(problem) (on_unknown: \(rule.onUnknown.rawValue))"
            }
        }
        let valueText =
            instance.lastValue.map { value -> String in
                if case .number(let number) = value { return Evaluator.readable(number) }
                return value.jsonText
            } ?? "no value"
        let condition = Evaluator.conditionText(rule.leaves[0], kind: kind)
        let duration =
            kind == .fire && rule.forMilliseconds > 0 ? " for \(RuleDuration.format(rule.forMilliseconds))" : ""
        if let window = rule.leaves[0].window {
            if case .atLeast(let needed, _) = window {
                return "\(window): \(valueText) matching (\(kind == .fire ? "at least" : "fewer than") \(needed)) "
                    + "\(Evaluator.conditionText(rule.leaves[0], kind: .fire))\(duration)"
            }
            if case .times(let needed, _) = window {
                return "\(window): became \(Evaluator.conditionText(rule.leaves[0], kind: .fire)) \(valueText) "
                    + "time(s) (\(kind == .fire ? "at least" : "fewer than") \(needed))\(duration)"
            }
            return "\(window) = \(valueText) \(condition)\(duration)"
        }
        return "value \(valueText) \(condition)\(duration)"
    }

    /// Why a combined or grouped instance fired or cleared: the combination (or vote) and each condition.
    func combinedReason(rule: Rule, conditions: [ConditionReport], kind: TransitionKind, time: Int64) -> String {
        let duration =
            kind == .fire && rule.forMilliseconds > 0 ? " for \(RuleDuration.format(rule.forMilliseconds))" : ""
        let unknownNote =
            conditions.contains { $0.truth == .unknown } && rule.onUnknown != .keep
            ? " (on_unknown: \(rule.onUnknown.rawValue))" : ""
        if let grouping = rule.grouping {
            let holding = conditions.count { $0.truth == .true }
            let unknown = conditions.count { $0.truth == .unknown }
            let condition = "\(Evaluator.conditionText(rule.leaves[0], kind: .fire))"
            let unknownText = unknown > 0 ? ", \(unknown) unknown" : ""
            return "\(holding) of \(conditions.count) \(condition)\(unknownText) (match: \(grouping.match))"
                + "\(duration)\(unknownNote)"
        }
        // The combination as written, each leaf with its value and truth: `all(humidity=85 (true), not(…))`.
        func text(_ combination: Rule.Combination) -> String {
            switch combination {
            case .leaf(let index): conditions.indices.contains(index) ? conditions[index].summary : "?"
            case .all(let elements): "all(\(elements.map(text).joined(separator: ", ")))"
            case .any(let elements): "any(\(elements.map(text).joined(separator: ", ")))"
            case .not(let element): "not(\(text(element)))"
            }
        }
        let verb = kind == .fire ? "holds" : "no longer holds"
        return "\(rule.combination.map(text) ?? "") \(verb)\(duration)\(unknownNote)"
    }

    /// A leaf's condition in words (`above 80`, `equals "open"`).
    static func conditionText(_ leaf: Rule.Leaf, kind: TransitionKind) -> String {
        switch leaf.condition {
        case .above(let threshold):
            kind == .fire
                ? "above \(JSONValue.format(threshold))" : "at or below \(JSONValue.format(leaf.clear ?? threshold))"
        case .below(let threshold):
            kind == .fire
                ? "below \(JSONValue.format(threshold))" : "at or above \(JSONValue.format(leaf.clear ?? threshold))"
        case .between(let low, let high):
            "\(kind == .fire ? "" : "not ")between \(JSONValue.format(low)) and \(JSONValue.format(high))"
        case .outside(let low, let high):
            "\(kind == .fire ? "" : "not ")outside \(JSONValue.format(low))..\(JSONValue.format(high))"
        case .equals(let expected):
            "\(kind == .fire ? "equals" : "no longer equals") \(expected.jsonText)"
        case .staleOnly:
            kind == .fire ? "silent" : "reporting again"
        }
    }

    static func render(
        _ action: Action,
        rule: Rule,
        labels: [Label],
        value: JSONValue?,
        kind: TransitionKind,
        reason: String,
        time: Int64,
        conditions: [ConditionReport] = []
    ) -> RenderedAction {
        let threshold: JSONValue
        switch rule.condition {
        case .above(let number), .below(let number): threshold = .number(number)
        default: threshold = .string(rule.thresholdText)
        }
        // The closures capture these, not the rule: a copy of a `Rule` retains every one of its buffers.
        let ruleID = rule.id
        let severity = rule.severity
        let isGroup = rule.grouping != nil
        let lookup: (String) -> JSONValue? = { name in
            switch name {
            case "value": return value ?? .null
            case "rule": return .string(ruleID)
            case "threshold": return threshold
            case "severity": return .string(severity.rawValue)
            case "transition": return .string(kind.rawValue)
            case "reason"
            where !labels.contains { $0.name == "reason" } && !conditions.contains { $0.name == "reason" }:
                return .string(reason)
            case "count" where isGroup:
                return .number(Double(conditions.count { $0.truth == .true }))
            default:
                if let label = labels.first(where: { $0.name == name }) { return .string(label.value) }
                return conditions.first { $0.name == name }.map { $0.value ?? .null }
            }
        }
        let textLookup: (String) -> String? = { name in
            guard let value = lookup(name) else { return nil }
            if case .string(let text) = value { return text }
            return value.jsonText
        }
        switch action.handler {
        case .publish(let topic, let payloadTemplate, let qos, let retain):
            let payload = Self.addingDecision(
                to: payloadTemplate?.render(lookup) ?? .object([]),
                rule: rule.id,
                reason: reason,
                value: value,
                time: time
            )
            return .publish(topic: topic.render(textLookup), payload: payload, qos: qos, retain: retain)
        case .log(let message):
            return .log(message: message.render(textLookup))
        case .command(let arguments, let timeout):
            return .command(arguments: arguments.map { $0.render(textLookup) }, timeoutMilliseconds: timeout)
        case .webhook(let url, let bodyTemplate, let timeout):
            // Without a body: what happened, as one object; a given object gets the same keys it lacks.
            let body = Self.addingDecision(
                to: bodyTemplate?.render(lookup)
                    ?? .object([
                        ("rule", .string(rule.id)), ("transition", .string(kind.rawValue)),
                        ("labels", .object(labels.map { (key: $0.name, value: .string($0.value)) })),
                        ("severity", .string(rule.severity.rawValue)),
                    ]),
                rule: rule.id,
                reason: reason,
                value: value,
                time: time
            )
            let encodedLookup: (String) -> String? = { name in textLookup(name).map(Self.percentEncoded) }
            return .webhook(url: url.render(encodedLookup), body: body, timeoutMilliseconds: timeout)
        }
    }

    /// An object payload with the keys it lacks of `rule`, `reason`, `value` and `ts` (anything else as it is).
    static func addingDecision(
        to payload: JSONValue,
        rule: String,
        reason: String,
        value: JSONValue?,
        time: Int64
    ) -> JSONValue {
        guard case .object(var pairs) = payload else { return payload }
        pairs.reserveCapacity(pairs.count + 4)
        func add(_ key: String, _ value: @autoclosure () -> JSONValue) {
            if !pairs.contains(where: { $0.key == key }) { pairs.append((key, value())) }
        }
        add("rule", .string(rule))
        add("reason", .string(reason))
        add("value", value ?? .null)
        add("ts", .number(Double(time)))
        return .object(pairs)
    }

    /// A number for a reason text: rounded to 15 significant digits, so that a window's floating-point residue
    /// (`30.706999999999994`) reads as `30.707`; integers up to 10^15 stay exact. Payloads keep the exact value.
    public static func readable(_ value: Double) -> String {
        guard value.isFinite, value != 0, value != value.rounded() else { return JSONValue.format(value) }
        let magnitude = abs(value)
        var scale = 1.0
        while magnitude * scale < 1e14 { scale *= 10 }
        while magnitude * scale >= 1e15 { scale /= 10 }
        return JSONValue.format((value * scale).rounded() / scale)
    }

    /// A placeholder's value inside a URL: everything but unreserved characters percent-encoded.
    static func percentEncoded(_ text: String) -> String {
        var output = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                output.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                output.unicodeScalars.append("%")
                output.unicodeScalars.append(hex[Int(byte >> 4)])
                output.unicodeScalars.append(hex[Int(byte & 0xF)])
            }
        }
        return output
    }
}
