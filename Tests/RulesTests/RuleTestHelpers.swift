import Rules

/// A rule file with one rule `r` on `sensors/{device}/temperature` plus the given keys (one per line).
func ruleFile(_ keys: String, topic: String = "sensors/{device}/temperature") -> String {
    let indented = keys.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n")
    return """
        rules:
          - id: r
            topic: \(topic)
        \(indented)
            on_fire:
              - publish: {topic: "actuators/{device}/x/set", payload: {state: "on"}}
            on_clear:
              - publish: {topic: "actuators/{device}/x/set", payload: {state: "off"}}

        """
}

func loadRules(_ text: String, path: String = "rules.yaml") throws -> RuleSet {
    try RuleLoader.load([RuleSource(path: path, text: text)])
}

/// Feeds payloads at times (ms) to `sensors/d1/temperature`, runs the clock to `until`, and returns
/// the transitions as `fire@MS` / `clear@MS`.
func transitions(
    _ ruleSet: RuleSet,
    _ readings: [(Int64, String)],
    until: Int64? = nil,
    topic: String = "sensors/d1/temperature"
) -> [String] {
    let outcome = Replay.run(
        ruleSet,
        readings: readings.map { Reading(topic: topic, payload: $0.1, timestamp: $0.0) },
        end: until
    )
    return outcome.transitions.map { "\($0.transition.rawValue)@\($0.timestamp)" }
}
