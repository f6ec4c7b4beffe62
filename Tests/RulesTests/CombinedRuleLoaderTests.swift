import FileFormats
import Rules
import Testing

@Suite("Combined rule validation")
struct CombinedRuleLoaderTests {
    typealias Problem = RuleLoaderTests.Problem

    static let head = "rules:\n  - id: r\n"

    @Test(arguments: [
        Problem(
            name: "no leaf captures every name: a cartesian join",
            text: head
                + "    all:\n      - {topic: \"sensors/{room}/humidity\", above: 80}\n"
                + "      - {topic: \"sensors/{zone}/temperature\", above: 25}\n",
            line: 2,
            column: 5,
            message: "no condition captures every name of the rule ({room}, {zone})"
        ),
        Problem(
            name: "match without group_by",
            text: head + "    topic: sensors/{tank}/{probe}/t\n    above: 90\n    match: all\n",
            line: 5,
            column: 5,
            message: "'match' without 'group_by'"
        ),
        Problem(
            name: "group_by names a capture the topic lacks, with a suggestion",
            text: head + "    topic: sensors/{tank}/{probe}/t\n    above: 90\n    group_by: [tnk]\n",
            line: 5,
            column: 16,
            message: "group_by 'tnk' is not captured by the topic 'sensors/{tank}/{probe}/t' (did you mean 'tank'?)"
        ),
        Problem(
            name: "a bad match",
            text: head + "    topic: sensors/{tank}/{probe}/t\n    above: 90\n    group_by: [tank]\n    match: most\n",
            line: 6,
            column: 12,
            message: "match 'most' must be any, all or 'at_least N'"
        ),
        Problem(
            name: "group_by with all",
            text: head + "    all:\n      - {topic: \"a/{x}\", above: 1}\n    group_by: [x]\n",
            line: 5,
            column: 5,
            message: "'group_by' beside 'all'"
        ),
        Problem(
            name: "an empty all",
            text: head + "    all: []\n",
            line: 3,
            column: 10,
            message: "'all' is empty: it needs at least one condition"
        ),
        Problem(
            name: "a leaf with two thresholds",
            text: head + "    any:\n      - {topic: \"a/{x}\", above: 1, below: 0}\n",
            line: 4,
            column: 36,
            message: "a condition of rule 'r' has two conditions ('above' and 'below'): keep exactly one"
        ),
        Problem(
            name: "a leaf with no threshold",
            text: head + "    any:\n      - {topic: \"a/{x}\"}\n",
            line: 4,
            column: 9,
            message: "has no condition: add one of above, below"
        ),
        Problem(
            name: "a leaf with no topic",
            text: head + "    any:\n      - {above: 3}\n",
            line: 4,
            column: 9,
            message: "has no 'topic'"
        ),
        Problem(
            name: "an unknown key in a leaf, with a suggestion",
            text: head + "    any:\n      - {topic: \"a/{x}\", above: 1, clera: 0}\n",
            line: 4,
            column: 36,
            message: "unknown key 'clera' in a condition (did you mean 'clear'?)"
        ),
        Problem(
            name: "a threshold beside all",
            text: head + "    above: 3\n    all:\n      - {topic: \"a/{x}\", above: 1}\n",
            line: 3,
            column: 5,
            message: "'above' beside 'all': a rule with 'all' has its 'above' on each of its conditions"
        ),
        Problem(
            name: "both all and any",
            text: head
                + "    all:\n      - {topic: \"a/{x}\", above: 1}\n    any:\n      - {topic: \"a/{x}\", above: 2}\n",
            line: 5,
            column: 5,
            message: "has both 'all' and 'any': nest one inside the other"
        ),
        Problem(
            name: "not with a list",
            text: head + "    not:\n      - {topic: \"a/{x}\", above: 1}\n",
            line: 4,
            column: 7,
            message: "'not' takes one condition (a mapping), not a list"
        ),
        Problem(
            name: "a leaf's clear on the wrong side",
            text: head + "    all:\n      - {topic: \"a/{x}\", above: 10, clear: 12}\n",
            line: 4,
            column: 44,
            message: "clear 12 is above the 'above' threshold 10"
        ),
        Problem(
            name: "a placeholder that is neither a capture nor a leaf name",
            text: head
                + "    all:\n      - {topic: \"a/{x}\", above: 1, name: level}\n    on_fire:\n      - log: \"{levl}\"\n",
            line: 6,
            column: 14,
            message: "placeholder {levl} is not captured by the rule's topic (it captures {x}; also available: {level}"
        ),
        Problem(
            name: "two leaves with one name",
            text: head
                + "    all:\n      - {topic: \"a/{x}\", above: 1, name: n}\n      - {topic: \"b/{x}\", above: 1, name: n}\n",
            line: 5,
            column: 9,
            message: "condition name 'n' is used twice"
        ),
        Problem(
            name: "count outside a group",
            text: head + "    topic: a/{x}\n    above: 1\n    on_fire:\n      - log: \"{count}\"\n",
            line: 6,
            column: 14,
            message: "placeholder {count} is not captured"
        ),
    ])
    func reportsProblem(_ problem: Problem) {
        RuleLoaderTests().reportsProblem(problem)
    }

    @Test func aCombinedRuleSubscribesToEveryLeafTopic() throws {
        let rules = try loadRules(
            """
            rules:
              - id: vent
                all:
                  - {topic: "sensors/{room}/humidity", above: 80, clear: 75}
                  - {topic: "sensors/{room}/temperature", above: 25}
                  - not: {topic: "sensors/{room}/window", equals: open}
                  - {topic: "weather/outdoor/temperature", below: 30}
                on_fire:
                  - log: "{room}"
            """
        )
        #expect(
            rules.filters == [
                "sensors/+/humidity", "sensors/+/temperature", "sensors/+/window", "weather/outdoor/temperature",
            ]
        )
        #expect(rules.rules[0].captureNames == ["room"])
        #expect(rules.rules[0].leaves.count == 4)
        #expect(
            rules.sharedConditionNotes.map(\.message) == [
                "rule 'vent': 'weather/outdoor/temperature' captures fewer names than the rule ({room}): every reading on "
                    + "it re-evaluates every instance of the rule"
            ]
        )
    }
}
