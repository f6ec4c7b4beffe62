import FileFormats
import Foundation
import Rules
import Testing

@Suite("Window, schedule, keep_firing_for and flapping validation")
struct TimeRuleLoaderTests {
    typealias Problem = RuleLoaderTests.Problem

    static let base = RuleLoaderTests.base

    @Test(arguments: [
        Problem(
            name: "two windows on one condition",
            text: base + "    avg: 5m\n    max: 5m\n    above: 1\n",
            line: 5,
            column: 5,
            message: "a condition has at most one window: 'avg' and 'max' both given"
        ),
        Problem(
            name: "count of the last N readings",
            text: base + "    count: 10\n    below: 1\n",
            line: 4,
            column: 12,
            message: "'count' takes a duration"
        ),
        Problem(
            name: "an average of strings",
            text: base + "    avg: 5m\n    equals: open\n",
            line: 4,
            column: 5,
            message: "'avg' computes a number: it goes with above, below, between or outside"
        ),
        Problem(
            name: "clear with at_least",
            text: base + "    at_least: 3 of 5\n    above: 30\n    clear: 28\n",
            line: 6,
            column: 5,
            message: "'clear' does not go with 'at_least'"
        ),
        Problem(
            name: "stale alone with a window",
            text: base + "    stale: 5m\n    avg: 1m\n",
            line: 5,
            column: 5,
            message: "'avg' needs a threshold to compare its value with"
        ),
        Problem(
            name: "stale alone on a leaf",
            text:
                "rules:\n  - id: r\n    all:\n      - {topic: \"a/{x}\", stale: 5m}\n      - {topic: \"b/{x}\", above: 1}\n",
            line: 4,
            column: 9,
            message: "a condition of rule 'r' has no condition: add one of above, below, between, outside, equals"
        ),
        Problem(
            name: "clear with times",
            text: base + "    times: 3 in 1h\n    equals: open\n    clear: 28\n",
            line: 6,
            column: 5,
            message: "'clear' does not go with 'times': it clears when it became true fewer than M times"
        ),
        Problem(
            name: "times of the last N readings",
            text: base + "    times: 3 of 5\n    equals: open\n",
            line: 4,
            column: 12,
            message: "times '3 of 5' must look like '11 in 1h'"
        ),
        Problem(
            name: "times zero",
            text: base + "    times: 0 in 1h\n    equals: open\n",
            line: 4,
            column: 12,
            message: "times '0 in 1h' must look like '11 in 1h'"
        ),
        Problem(
            name: "at_least M of N with N below M",
            text: base + "    at_least: 3 of 2\n    above: 1\n",
            line: 4,
            column: 15,
            message: "N in 'M of N' must be a whole number at least M"
        ),
        Problem(
            name: "at_least in words",
            text: base + "    at_least: three times\n    above: 1\n",
            line: 4,
            column: 15,
            message: "must look like '3 of 5' (readings) or '3 in 10m' (a duration)"
        ),
        Problem(
            name: "rate without over",
            text: base + "    rate: {per: 1m}\n    above: 1\n",
            line: 4,
            column: 11,
            message: "'rate' needs 'per' and 'over'"
        ),
        Problem(
            name: "a zero-length window",
            text: base + "    delta: 0s\n    above: 1\n",
            line: 4,
            column: 12,
            message: "'delta' must be longer than 0"
        ),
        Problem(
            name: "an unknown time zone",
            text: base + "    above: 1\n    active: {from: \"08:00\", to: \"09:00\", timezone: Europe/Berln}\n",
            line: 5,
            column: 52,
            message: "unknown time zone 'Europe/Berln'"
        ),
        Problem(
            name: "from equal to to",
            text: base + "    above: 1\n    active: {from: \"08:00\", to: \"08:00\"}\n",
            line: 5,
            column: 13,
            message: "'from' and 'to' are the same time"
        ),
        Problem(
            name: "a misspelt day, with a suggestion",
            text: base + "    above: 1\n    active: {days: [mon, tues], from: \"08:00\", to: \"09:00\"}\n",
            line: 5,
            column: 26,
            message: "day 'tues' must be one of mon, tue, wed, thu, fri, sat, sun (did you mean 'tue'?)"
        ),
        Problem(
            name: "a time that is not HH:MM",
            text: base + "    above: 1\n    active: {from: \"8am\", to: \"09:00\"}\n",
            line: 5,
            column: 20,
            message: "'from' '8am' must be a local time HH:MM"
        ),
        Problem(
            name: "a schedule without from",
            text: base + "    above: 1\n    active: {to: \"09:00\"}\n",
            line: 5,
            column: 13,
            message: "'active' needs 'from'"
        ),
        Problem(
            name: "an unknown key in active",
            text: base + "    above: 1\n    active: {from: \"08:00\", to: \"09:00\", tz: UTC}\n",
            line: 5,
            column: 42,
            message: "unknown key 'tz' in 'active'"
        ),
        Problem(
            name: "outside_active without active",
            text: base + "    above: 1\n    outside_active: hold\n",
            line: 5,
            column: 5,
            message: "'outside_active' without 'active'"
        ),
        Problem(
            name: "flapping thresholds the wrong way round",
            text: base + "    above: 1\n    flapping: {low: 50, high: 20}\n",
            line: 5,
            column: 15,
            message: "flapping 'low' (50) is above 'high' (20)"
        ),
        Problem(
            name: "a flapping state that does not exist",
            text: base + "    above: 1\n    flapping: {state: freeze}\n",
            line: 5,
            column: 23,
            message: "flapping state 'freeze' must be hold, fire or clear"
        ),
        Problem(
            name: "max_samples without a window",
            text: base + "    above: 1\n    max_samples: 10\n",
            line: 5,
            column: 5,
            message: "'max_samples' without a window"
        ),
        Problem(
            name: "a window of more readings than max_samples",
            text: base + "    avg: 20\n    max_samples: 10\n    above: 1\n",
            line: 2,
            column: 5,
            message: "the window 'avg 20' needs 20 readings but 'max_samples' is 10"
        ),
        Problem(
            name: "a window beside all",
            text: "rules:\n  - id: r\n    all:\n      - {topic: \"a/{x}\", above: 1}\n    avg: 5m\n",
            line: 5,
            column: 5,
            message: "'avg' beside 'all'"
        ),
        Problem(
            name: "keep_firing_for that is not a duration",
            text: base + "    above: 1\n    keep_firing_for: soon\n",
            line: 5,
            column: 22,
            message: "'keep_firing_for' 'soon' is not a duration"
        ),
    ])
    func reportsProblem(_ problem: Problem) {
        RuleLoaderTests().reportsProblem(problem)
    }

    @Test func everyKeyParses() throws {
        let rules = try loadRules(
            """
            rules:
              - id: full
                all:
                  - {topic: "a/{x}/t", avg: 5m, above: 30, clear: 28, max_samples: 500}
                  - {topic: "a/{x}/t", rate: {per: 1m, over: 5m}, above: 2}
                  - {topic: "a/{x}/door", at_least: 3 in 10m, equals: open}
                  - {topic: "a/{x}/h", at_least: 2 of 4, below: 10}
                  - {topic: "a/{x}/p", delta: 10m, outside: [-1, 1]}
                  - {topic: "a/{x}/n", count: 1m, below: 1}
                keep_firing_for: 2m
                active: {days: [mon, fri], from: "22:00", to: "06:00", timezone: UTC}
                outside_active: hold
                flapping: {history: 10, low: 15, high: 40, state: clear}
            """
        )
        let rule = try #require(rules.rules.first)
        #expect(
            rule.leaves.map { $0.window?.description } == [
                "avg 5m", "rate per 1m over 5m", "at_least 3 in 10m", "at_least 2 of 4", "delta 10m", "count 1m",
            ]
        )
        #expect(rule.leaves[0].maxSamples == 500)
        #expect(rule.keepFiringForMilliseconds == 120_000)
        #expect(rule.schedule?.description == "mon,fri 22:00-06:00 UTC")
        #expect(rule.outsideActive == .hold)
        #expect(rule.flapping == Rule.FlapDetection(history: 10, lowPercent: 15, highPercent: 40, state: .clear))
        // Every duration window but the first, which states max_samples.
        #expect(rules.warnings.map(\.location.line) == [5, 6, 8, 9])
        #expect(
            rules.warnings.first?.message
                == "a condition of rule 'full': the window 'rate per 1m over 5m' keeps every reading within it, up "
                + "to the default max_samples=10000 per instance (160 kB): 1,000 instances × 10000 samples = up to "
                + "160 MB; past it the oldest reading is dropped and counted, and the window's value is unknown while "
                + "a dropped reading would still be inside it. State 'max_samples' (the most "
                + "readings its span can hold) to bound it"
        )
    }

    /// The hashes that the version before windows (4b75ecf) computed for the shipped rules, combined and
    /// grouped ones included: a snapshot it saved in `--state-dir` must still restore after an upgrade.
    @Test func rulesWithoutTheNewKeysKeepTheirDefinitionHashes() throws {
        let rules = try RuleLoader.load(
            ["greenhouse.yaml", "cold-chain.yaml"].map { name in
                RuleSource(
                    path: name,
                    text: try String(
                        contentsOf: DifferentialReplayTests.fixtures.deletingLastPathComponent()
                            .appendingPathComponent("before-windows/\(name)"),
                        encoding: .utf8
                    )
                )
            }
        )
        #expect(
            rules.rules.map { "\($0.id) \($0.definitionHash)" } == [
                "greenhouse-vent 2f35d9c27ab9ea48", "greenhouse-irrigation 1984cac4b4d9f20b",
                "greenhouse-frost 3cb9800591aa1dc8", "freezer-door-open 65f30137f8e0c804",
                "freezer-warm d8619c807fd7e4d7", "freezer-probes-warm b888a8f5ab7a468a",
            ]
        )
        // A new key changes the hash.
        let windowed = try loadRules(ruleFile("avg: 5m\nabove: 30"))
        let plain = try loadRules(ruleFile("above: 30"))
        #expect(windowed.definitionHashes != plain.definitionHashes)
    }
}
