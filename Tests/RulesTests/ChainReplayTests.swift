import FileFormats
import Rules
import Testing

/// A rule's `publish` that another rule reads is fed back at its own time, as the broker does live, so that a
/// chain of rules replays (`replay`, `test`, `diff`) as it runs.
@Suite("Chains of rules in replay")
struct ChainReplayTests {
    static let rules = """
        rules:
          - id: hot
            topic: sensors/{room}/temperature
            above: 30
            for: 1s
            on_fire:
              - publish: {topic: "events/{room}/hot", payload: {value: 1}}
          - id: often-hot
            topic: events/{room}/hot
            count: 1h
            above: 1
            on_fire:
              - log: "{room} was hot {value} times within an hour"
        """

    /// `fire@MS rule` for every transition.
    func transitions(_ readings: [(Int64, String)], end: Int64? = nil) throws -> [String] {
        let outcome = Replay.run(
            try loadRules(Self.rules),
            readings: readings.map { Reading(topic: "sensors/a/temperature", payload: $1, timestamp: $0) },
            end: end
        )
        return outcome.transitions.map { "\($0.transition.rawValue)@\($0.timestamp) \($0.ruleID)" }
    }

    @Test func aPublishThatAnotherRuleReadsIsFedBackAtItsOwnTime() throws {
        // `hot` fires at 1 s and 31 s by its timer, before the readings at 10 s and 40 s: `often-hot` counts
        // its second event at 31 s, not at 40 s.
        #expect(
            try transitions([(0, "31"), (10_000, "20"), (30_000, "31"), (40_000, "20")]) == [
                "fire@1000 hot", "clear@10000 hot", "fire@31000 hot", "fire@31000 often-hot", "clear@40000 hot",
            ]
        )
    }

    @Test func aRuleTestSeesTheChain() throws {
        let suite = try RuleTestSuite.parse(
            RuleSource(
                path: "t.test.yaml",
                text: """
                    rule_files: [r.yaml]
                    tests:
                      - name: chained
                        readings:
                          - {at: 0s, every: 10s, topic: sensors/a/temperature, values: [31, 20, 31, 20]}
                        expect:
                          - {at: 1s, rule: hot, transition: fire, topic: events/a/hot}
                          - {at: 10s, rule: hot, transition: clear}
                          - {at: 21s, rule: hot, transition: fire}
                          - {at: 21s, rule: often-hot, transition: fire, value: 2}
                          - {at: 30s, rule: hot, transition: clear}
                    """
            )
        )
        let results = suite.run(with: try loadRules(Self.rules))
        #expect(results.first?.passed == true, "\(results.first?.report ?? "")")
    }

    /// A rule that feeds itself is cut after a bounded number of steps and says so, instead of looping.
    @Test func aLoopIsCutAndCounted() throws {
        let looping = try loadRules(
            """
            rules:
              - id: echo
                topic: loop/{x}
                equals: ping
                on_fire:
                  - publish: {topic: "loop/{x}", payload: pong}
                on_clear:
                  - publish: {topic: "loop/{x}", payload: ping}
            """
        )
        let outcome = Replay.run(looping, readings: [Reading(topic: "loop/a", payload: "ping", timestamp: 0)])
        #expect(outcome.chainStepsCut > 0)
        #expect(outcome.transitions.count == Replay.chainStepLimit + 1)
    }
}

/// `rules: [ids]` on a rule test: only those rules' transitions are compared, so a test need not list what
/// every other rule of its files does; an id the files do not define is an error with "did you mean".
@Suite("Rule tests scoped to some rules")
struct ScopedRuleTestTests {
    static func suite(_ test: String) throws -> RuleTestSuite {
        try RuleTestSuite.parse(RuleSource(path: "t.test.yaml", text: "rule_files: [r.yaml]\ntests:\n" + test))
    }

    static let test = """
          - name: only hot
            rules: [RULES]
            readings:
              - {at: 0s, every: 10s, topic: sensors/a/temperature, values: [31, 20, 31, 20]}
            expect:
              - {at: 1s, rule: hot, transition: fire}
              - {at: 10s, rule: hot, transition: clear}
              - {at: 21s, rule: hot, transition: fire}
              - {at: 30s, rule: hot, transition: clear}
        """

    @Test func onlyTheNamedRulesAreCompared() throws {
        let results = try Self.suite(Self.test.replacing("RULES", with: "hot")).run(
            with: try loadRules(ChainReplayTests.rules)
        )
        #expect(results.first?.passed == true, "\(results.first?.report ?? "")")
        // Without `rules:`, the chained rule's fire at 21 s must be listed too.
        let unscoped = try Self.suite(Self.test.replacing("    rules: [RULES]\n", with: "")).run(
            with: try loadRules(ChainReplayTests.rules)
        )
        #expect(unscoped.first?.passed == false)
    }

    @Test func anUnknownRuleIsAnErrorThatNamesWhere() throws {
        let results = try Self.suite(Self.test.replacing("RULES", with: "hott")).run(
            with: try loadRules(ChainReplayTests.rules)
        )
        #expect(results.first?.passed == false)
        #expect(
            results.first?.report
                == "t.test.yaml:4:13: error: rule 'hott' is not in the rule files (did you mean 'hot'?)",
            "\(results.first?.report ?? "")"
        )
    }

    @Test func anExpectationOfARuleOutsideTheScopeIsAnError() throws {
        let text = Self.test.replacing("RULES", with: "often-hot").replacing(
            "      - {at: 1s, rule: hot",
            with: "      - {at: 1s, rule: hot"
        )
        let results = try Self.suite(text).run(with: try loadRules(ChainReplayTests.rules))
        #expect(results.first?.passed == false)
        #expect(
            results.first?.report.hasPrefix(
                "t.test.yaml:8:24: error: this test checks only rules [often-hot], not 'hot': add it to 'rules:'"
            ) == true,
            "\(results.first?.report ?? "")"
        )
    }
}
