import FileFormats

/// The audit trail's lines (`--audit`): one JSON object per transition and per command, with the rule's
/// source `file:line`, a hash of its definition, the instance labels, the reading that decided it and
/// the reason.
public enum AuditLine {
    /// The audit line of a transition.
    public static func line(for transition: TransitionRecord, in ruleSet: RuleSet) -> String {
        var pairs: [(key: String, value: JSONValue)] = [
            ("ts", .number(Double(transition.timestamp))),
            ("event", .string("transition")),
            ("rule", .string(transition.ruleID)),
            ("transition", .string(transition.transition.rawValue)),
        ]
        pairs += Self.ruleFields(transition.ruleID, in: ruleSet)
        pairs += [
            ("labels", Self.labels(transition.labels)),
            ("reason", .string(transition.reason)),
            ("severity", .string(transition.severity.rawValue)),
            (
                "reading",
                transition.readingTimestamp.map {
                    .object([("ts", .number(Double($0))), ("value", transition.value ?? .null)])
                } ?? .null
            ),
        ]
        if !transition.conditions.isEmpty {
            // A combined rule's leaves (a group's members) that decided it, each with its reading.
            pairs.append(
                (
                    transition.conditions[0].isMember ? "members" : "conditions",
                    .array(transition.conditions.map(\.json))
                )
            )
        }
        return JSONValue.object(pairs).jsonText
    }

    /// The audit lines of what an evaluation decided: its transitions and commands, in order.
    public static func lines(for events: [EvaluationEvent], in ruleSet: RuleSet) -> [String] {
        events.compactMap { event in
            switch event {
            case .transition(let transition): line(for: transition, in: ruleSet)
            case .action(let action): line(for: action, in: ruleSet)
            case .transitionHeld(let ruleID, let labels, let timestamp, let transition, let heldBy, let until):
                JSONValue.object(
                    [
                        ("ts", .number(Double(timestamp))), ("event", .string("held")), ("rule", .string(ruleID)),
                        ("transition", .string(transition.rawValue)),
                    ] + ruleFields(ruleID, in: ruleSet) + [
                        ("labels", Self.labels(labels)), ("held_by", .string(heldBy)),
                        ("until", .number(Double(until))),
                    ]
                ).jsonText
            default: nil
            }
        }
    }

    /// The audit line of a command.
    public static func line(for action: FiredAction, in ruleSet: RuleSet) -> String {
        var pairs: [(key: String, value: JSONValue)] = [
            ("ts", .number(Double(action.timestamp))),
            ("event", .string("command")),
            ("rule", .string(action.ruleID)),
            ("transition", .string(action.transition.rawValue)),
        ]
        pairs += Self.ruleFields(action.ruleID, in: ruleSet)
        pairs += [("labels", Self.labels(action.labels)), ("reason", .string(action.reason))]
        switch action.action {
        case .publish(let topic, let payload, _, _): pairs += [("topic", .string(topic)), ("payload", payload)]
        case .log(let message): pairs.append(("log", .string(message)))
        case .command(let arguments, _): pairs.append(("command", .array(arguments.map(JSONValue.string))))
        case .webhook(let url, let body, _): pairs += [("webhook", .string(url)), ("body", body)]
        }
        return JSONValue.object(pairs).jsonText
    }

    private static func ruleFields(_ ruleID: String, in ruleSet: RuleSet) -> [(key: String, value: JSONValue)] {
        guard let index = ruleSet.index(ofRuleWithID: ruleID) else { return [] }
        let location = ruleSet.rules[index].location
        return [
            ("source", .string("\(location.file):\(location.line)")),
            ("definition", .string(ruleSet.definitionHashes[index])),
        ]
    }

    private static func labels(_ labels: [Label]) -> JSONValue {
        .object(labels.map { ($0.name, .string($0.value)) })
    }
}
