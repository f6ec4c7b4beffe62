import FileFormats
import Rules
import Testing

@Suite("Rule file validation")
struct RuleLoaderTests {
    struct Problem: Sendable, CustomTestStringConvertible {
        var name: String
        var text: String
        var line: Int
        var column: Int
        var message: String
        var testDescription: String { name }
    }

    static let base = "rules:\n  - id: r\n    topic: sensors/{rack}/temperature\n"

    @Test(arguments: [
        Problem(
            name: "unknown key with a suggestion",
            text: base + "    above: 30\n    cooldwn: 1m\n",
            line: 5,
            column: 5,
            message: "unknown key 'cooldwn' in a rule (did you mean 'cooldown'?)"
        ),
        Problem(name: "no condition", text: base, line: 2, column: 5, message: "rule 'r' has no condition"),
        Problem(
            name: "empty file (a truncated write)",
            text: "# Server room\n",
            line: 1,
            column: 1,
            message: "the file has no content (a truncated write?); write 'rules: []' for no rules"
        ),
        Problem(
            name: "empty rules list",
            text: "rules:\n",
            line: 1,
            column: 7,
            message: "'rules:' is empty (a truncated write?); write 'rules: []' for no rules"
        ),
        Problem(
            name: "two conditions",
            text: base + "    above: 30\n    below: 10\n",
            line: 5,
            column: 5,
            message: "has two conditions ('above' and 'below')"
        ),
        Problem(
            name: "bad duration",
            text: base + "    above: 30\n    for: 10 sec\n",
            line: 5,
            column: 10,
            message: "'for' '10 sec' is not a duration"
        ),
        Problem(
            name: "duration without unit",
            text: base + "    above: 30\n    cooldown: 10\n",
            line: 5,
            column: 15,
            message: "is not a duration"
        ),
        Problem(
            name: "a duration longer than 100 years",
            text: base + "    above: 30\n    for: 99999999d\n",
            line: 5,
            column: 10,
            message: "'for' '99999999d' is longer than 100 years"
        ),
        Problem(
            name: "NaN threshold",
            text: base + "    above: .nan\n",
            line: 4,
            column: 12,
            message: "'above' must be a finite number"
        ),
        Problem(
            name: "infinite threshold",
            text: base + "    below: -.inf\n",
            line: 4,
            column: 12,
            message: "'below' must be a finite number"
        ),
        Problem(
            name: "quoted threshold",
            text: base + "    above: \"30\"\n",
            line: 4,
            column: 12,
            message: "'above' must be a number"
        ),
        Problem(
            name: "between low >= high",
            text: base + "    between: [20, 20]\n",
            line: 4,
            column: 14,
            message: "'between' needs low < high, got [20, 20]"
        ),
        Problem(
            name: "outside with one number",
            text: base + "    outside: [20]\n",
            line: 4,
            column: 14,
            message: "'outside' needs exactly two numbers"
        ),
        Problem(
            name: "clear above an above threshold",
            text: base + "    above: 30\n    clear: 31\n",
            line: 5,
            column: 12,
            message: "clear 31 is above the 'above' threshold 30"
        ),
        Problem(
            name: "clear below a below threshold",
            text: base + "    below: 5\n    clear: 4\n",
            line: 5,
            column: 12,
            message: "clear 4 is below the 'below' threshold 5"
        ),
        Problem(
            name: "clear on between",
            text: base + "    between: [1, 2]\n    clear: 3\n",
            line: 5,
            column: 12,
            message: "'clear' applies only to 'above' and 'below'"
        ),
        Problem(
            name: "# not last",
            text: "rules:\n  - id: r\n    topic: a/#/b\n    above: 1\n",
            line: 3,
            column: 12,
            message: "'#' must be the last level"
        ),
        Problem(
            name: "+ mixed into a level",
            text: "rules:\n  - id: r\n    topic: a/b+/c\n    above: 1\n",
            line: 3,
            column: 12,
            message: "'+' must fill a whole level"
        ),
        Problem(
            name: "capture mixed into a level",
            text: "rules:\n  - id: r\n    topic: a/x{rack}\n    above: 1\n",
            line: 3,
            column: 12,
            message: "a capture '{name}' must fill a whole level"
        ),
        Problem(
            name: "placeholder not captured",
            text: base + "    above: 30\n    on_fire:\n      - publish: {topic: \"actuators/{room}/set\"}\n",
            line: 6,
            column: 26,
            message: "placeholder {room} is not captured by the rule's topic (it captures {rack}"
        ),
        Problem(
            name: "placeholder not captured in a payload",
            text: base + "    above: 30\n    on_fire:\n      - publish: {topic: a, payload: {x: \"{zone}\"}}\n",
            line: 6,
            column: 42,
            message: "placeholder {zone} is not captured"
        ),
        Problem(
            name: "action without topic",
            text: base + "    above: 30\n    on_fire:\n      - publish: {payload: 1}\n",
            line: 6,
            column: 18,
            message: "a publish action needs a 'topic'"
        ),
        Problem(
            name: "action without handler",
            text: base + "    above: 30\n    on_clear:\n      - {}\n",
            line: 6,
            column: 9,
            message: "an action needs a handler"
        ),
        Problem(
            name: "wildcard in an action topic",
            text: base + "    above: 30\n    on_fire:\n      - publish: {topic: \"a/+\"}\n",
            line: 6,
            column: 26,
            message: "must be a plain topic"
        ),
        Problem(
            name: "bad id",
            text: "rules:\n  - id: \"a b\"\n    topic: t\n    above: 1\n",
            line: 2,
            column: 9,
            message: "rule id 'a b' may only hold"
        ),
        Problem(
            name: "missing id",
            text: "rules:\n  - topic: t\n    above: 1\n",
            line: 2,
            column: 5,
            message: "rule has no 'id'"
        ),
        Problem(
            name: "missing topic",
            text: "rules:\n  - id: r\n    above: 1\n",
            line: 2,
            column: 5,
            message: "rule 'r' has no 'topic'"
        ),
        Problem(
            name: "bad severity",
            text: base + "    above: 1\n    severity: huge\n",
            line: 5,
            column: 15,
            message: "severity 'huge' must be one of"
        ),
        Problem(
            name: "bad on_unknown",
            text: base + "    above: 1\n    on_unknown: maybe\n",
            line: 5,
            column: 17,
            message: "on_unknown 'maybe' must be one of"
        ),
        Problem(
            name: "bad max_transitions",
            text: base + "    above: 1\n    max_transitions: lots\n",
            line: 5,
            column: 22,
            message: "max_transitions 'lots' must look like"
        ),
        Problem(
            name: "YAML syntax error",
            text: "rules:\n  - id: r\n    topic: [unclosed\n",
            line: 4,
            column: 1,
            message: "YAML syntax"
        ),
        Problem(
            name: "not a rule file",
            text: "rulez: []\n",
            line: 1,
            column: 1,
            message: "unknown key 'rulez' in a rule file (did you mean 'rules'?)"
        ),
        Problem(
            name: "reserved capture name",
            text: "rules:\n  - id: r\n    topic: s/{value}\n    above: 1\n",
            line: 3,
            column: 12,
            message: "reserved name"
        ),
        Problem(
            name: "stale of zero",
            text: base + "    above: 1\n    stale: 0s\n",
            line: 5,
            column: 12,
            message: "'stale' must be longer than 0"
        ),
    ])
    func reportsProblem(_ problem: Problem) {
        #expect {
            try loadRules(problem.text, path: "rules/room.yaml")
        } throws: { error in
            guard let error = error as? RuleLoadError else { return false }
            let match = error.diagnostics.first { $0.message.contains(problem.message) }
            guard let match else {
                Issue.record("no diagnostic contains '\(problem.message)': \(error)")
                return false
            }
            #expect(match.location.file == "rules/room.yaml")
            #expect(match.location.line == problem.line, "\(match)")
            #expect(match.location.column == problem.column, "\(match)")
            #expect(match.description.hasPrefix("rules/room.yaml:\(problem.line):\(problem.column): error: "))
            return true
        }
    }

    @Test func everyProblemIsReportedNotJustTheFirst() {
        let text = """
            rules:
              - id: a
                topic: x/#/y
                above: .nan
                cooldwn: 1m
              - id: b
                topic: t
                between: [3, 1]
                for: soon
            """
        #expect {
            try loadRules(text)
        } throws: { error in
            (error as? RuleLoadError)?.diagnostics.count == 5
        }
    }

    @Test func duplicateIDsAcrossFiles() {
        let first = RuleSource(path: "one.yaml", text: "rules:\n  - id: same\n    topic: a\n    above: 1\n")
        let second = RuleSource(
            path: "sub/two.yaml",
            text: "rules:\n  - id: other\n    topic: b\n    above: 1\n  - id: same\n    topic: c\n    below: 1\n"
        )
        #expect {
            try RuleLoader.load([first, second])
        } throws: { error in
            (error as? RuleLoadError)?.diagnostics.map(\.description) == [
                "sub/two.yaml:5:5: error: duplicate rule id 'same' (first defined at one.yaml:2:5)"
            ]
        }
    }

    @Test func theShippedExampleKeysLoad() throws {
        let text = """
            rules:
              - id: rack-cooling
                description: Cool a rack that runs hot.
                topic: sensors/{rack}/temperature
                field: value
                above: 30
                clear: 28
                for: 10s
                cooldown: 1m
                stale: 2m
                severity: warning
                on_unknown: keep
                min_on: 2m
                min_off: 2m
                max_transitions: 6 per 1h
                on_fire:
                  - publish: {topic: "actuators/{rack}/cooling/set", payload: {state: "on"}, qos: 2, retain: true}
                on_clear:
                  - publish: {topic: "actuators/{rack}/cooling/set", payload: {state: "off"}}
                  - log: {message: "cooled {rack}"}
                  - command: {run: [logger, "{rack}"], timeout: 5s}
            """
        let rules = try loadRules(text)
        let rule = try #require(rules.rules.first)
        #expect(rule.condition == .above(30))
        #expect(rule.clear == 28)
        #expect(rule.forMilliseconds == 10_000)
        #expect(rule.cooldownMilliseconds == 60_000)
        #expect(rule.staleMilliseconds == 120_000)
        #expect(rule.minOnMilliseconds == 120_000)
        #expect(rule.maxTransitions == Rule.TransitionLimit(count: 6, windowMilliseconds: 3_600_000))
        #expect(rule.onClear.count == 3)
        #expect(rules.filters == ["sensors/+/temperature"])
    }

    @Test(
        arguments: [
            ("500ms", 500), ("10s", 10_000), ("5m", 300_000), ("1h", 3_600_000), ("1h30m", 5_400_000), ("0", 0),
            ("2d", 172_800_000),
        ] as [(String, Int64)]
    )
    func durations(text: String, milliseconds: Int64) {
        #expect(RuleDuration.milliseconds(text) == milliseconds)
    }

    @Test(arguments: ["", "10", "s", "1x", "-1s", "1.5s", "1h 30m", "99999999999999999999s"])
    func badDurations(text: String) {
        #expect(RuleDuration.milliseconds(text) == nil)
    }
}

/// YAML 1.1 reads unquoted `on`, `off`, `yes` and `no` as booleans; a device that sends `on` would never
/// match, and a payload `{state: on}` would publish `true`. Rules read them as YAML 1.2 does: as the
/// words written. Only `true` and `false` are booleans.
@Suite("Rule files: words that YAML 1.1 makes booleans")
struct YAMLBooleanWordTests {
    @Test(arguments: ["on", "off", "yes", "no", "On", "OFF", "Yes", "NO", "y", "n"])
    func equalsAndPayloadsKeepTheWord(word: String) throws {
        let rules = try loadRules(
            """
            rules:
              - id: r
                topic: "sensors/{device}/switch"
                equals: \(word)
                on_fire:
                  - publish: {topic: "actuators/{device}/x/set", payload: {state: \(word), nested: [\(word)]}}
            """
        )
        let rule = try #require(rules.rules.first)
        #expect(rule.condition == .equals(.string(word)))
        let fired = Replay.run(rules, readings: [Reading(topic: "sensors/d/switch", payload: word, timestamp: 0)])
        #expect(fired.actions.count == 1)
        guard case .publish(_, let payload, _, _)? = fired.actions.first?.action else {
            Issue.record("no publish")
            return
        }
        #expect(payload["state"] == .string(word))
        #expect(payload["nested"] == .array([.string(word)]))
    }

    @Test(arguments: [("true", true), ("false", false), ("True", true), ("FALSE", false)])
    func trueAndFalseStayBooleans(word: String, value: Bool) throws {
        let rules = try loadRules("rules:\n  - {id: r, topic: \"s/{d}\", equals: \(word)}\n")
        #expect(rules.rules.first?.condition == .equals(.bool(value)))
    }
}

/// `check` reports every problem, not the first of each kind.
@Suite("Rule files: every problem at once")
struct RuleLoaderEveryProblemTests {
    /// An action with two handlers still has each handler checked.
    @Test func anActionWithTwoHandlersStillReportsTheirOtherErrors() {
        let text = """
            rules:
              - id: r
                topic: "sensors/{room}/temperature"
                above: 30
                on_fire:
                  - publish: {topic: "actuators/{rom}/fan/set"}
                    log: "{nope}"
            """
        let messages = Self.messages(text)
        #expect(messages.contains { $0.contains("an action has one handler") }, "\(messages)")
        #expect(messages.contains { $0.contains("rom") }, "\(messages)")
        #expect(messages.contains { $0.contains("nope") }, "\(messages)")
    }

    /// A file that does not parse still takes part in the duplicate-id check with the ids it declares.
    @Test func aFileWithASyntaxErrorTakesPartInTheDuplicateIDCheck() {
        let good = RuleSource(path: "a.yaml", text: "rules:\n  - {id: cooling, topic: \"s/{d}\", above: 1}\n")
        let broken = RuleSource(
            path: "b.yaml",
            text: "rules:\n  - id: cooling\n    topic: \"s/{d}\n    above: [1\n"
        )
        var lines: [String] = []
        do {
            _ = try RuleLoader.load([good, broken])
        } catch {
            lines = error.diagnostics.map(\.description)
        }
        #expect(lines.contains { $0.hasPrefix("b.yaml:") && !$0.contains("duplicate") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("b.yaml:2:") && $0.contains("duplicate rule id 'cooling'") }, "\(lines)")
    }

    static func messages(_ text: String) -> [String] {
        do {
            _ = try RuleLoader.load([RuleSource(path: "rules.yaml", text: text)])
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }
}
