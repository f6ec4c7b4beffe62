import FileFormats
import Testing

@testable import Rules

/// Windows, `keep_firing_for`, schedules and flap detection in the evaluator, one scenario per edge case.
@Suite struct TimeRuleTests {
    struct Scenario: Sendable, CustomTestStringConvertible {
        var name: String
        var keys: String
        var readings: [(Int64, String)]
        var until: Int64?
        var expected: [String]
        var topic = "sensors/d1/temperature"
        var testDescription: String { name }
    }

    /// Monday 2026-01-05 00:00 UTC, in ms.
    static let monday: Int64 = 20_458 * 86_400_000
    static let hour: Int64 = 3_600_000

    @Test(arguments: [
        Scenario(
            name: "avg: a duration window slides on the clock and clears with no new reading",
            keys: "avg: 10s\nabove: 30",
            readings: [(0, "40"), (2000, "25")],
            until: 20_000,
            expected: ["fire@0", "clear@10001"]
        ),
        Scenario(
            name: "avg: a reading is inside until t + D and leaves at t + D + 1 ms",
            keys: "avg: 10s\nabove: 30",
            readings: [(0, "40"), (2000, "25"), (10_000, "30")],
            until: 10_000,
            expected: ["fire@0"]
        ),
        Scenario(
            name: "avg: an empty window is unknown and on_unknown keep leaves it firing",
            keys: "avg: 5s\nabove: 30",
            readings: [(0, "40")],
            until: 60_000,
            expected: ["fire@0"]
        ),
        Scenario(
            name: "avg: an empty window with on_unknown clear clears when the last reading leaves",
            keys: "avg: 5s\nabove: 30\non_unknown: clear",
            readings: [(0, "40")],
            until: 60_000,
            expected: ["fire@0", "clear@5001"]
        ),
        Scenario(
            name: "avg of the last N: unknown until N readings",
            keys: "avg: 3\nabove: 30",
            readings: [(0, "40"), (1000, "40"), (2000, "40"), (3000, "10")],
            expected: ["fire@2000", "clear@3000"]
        ),
        Scenario(
            name: "avg keeps its hysteresis: clear applies to the average once firing",
            keys: "avg: 2\nabove: 30\nclear: 25",
            readings: [(0, "32"), (1000, "32"), (2000, "22"), (3000, "30"), (4000, "20")],
            expected: ["fire@1000", "clear@4000"]
        ),
        Scenario(
            name: "min: every reading of the window above the threshold",
            keys: "min: 10s\nabove: 30",
            readings: [(0, "35"), (1000, "31"), (2000, "29"), (13_000, "33")],
            until: 13_000,
            expected: ["fire@0", "clear@2000", "fire@13000"]
        ),
        Scenario(
            name: "max: the largest reading leaves and the next one takes over",
            keys: "max: 10s\nabove: 30",
            readings: [(0, "35"), (5000, "20")],
            until: 20_000,
            expected: ["fire@0", "clear@10001"]
        ),
        Scenario(
            name: "sum over a duration",
            keys: "sum: 1m\nabove: 100",
            readings: [(0, "60"), (10_000, "50")],
            until: 70_000,
            expected: ["fire@10000", "clear@60001"]
        ),
        Scenario(
            name: "count: an empty window is 0, so 'no reading for a minute' fires with no arrival",
            keys: "count: 1m\nbelow: 1",
            readings: [(0, "5")],
            until: 70_000,
            expected: ["fire@60001"]
        ),
        Scenario(
            name: "rate: unknown while the readings span less than half of 'over', never extrapolated",
            keys: "rate: {per: 1m, over: 2m}\nabove: 2",
            readings: [(0, "20"), (30_000, "24"), (60_000, "23")],
            expected: ["fire@60000"]
        ),
        Scenario(
            name: "rate: anchored to the real readings",
            keys: "rate: {per: 1m, over: 2m}\nabove: 2",
            readings: [(0, "20"), (60_000, "21"), (90_000, "22")],
            expected: []
        ),
        Scenario(
            name: "delta: newest minus oldest, unknown with one reading",
            keys: "delta: 10m\nabove: 5",
            readings: [(0, "20"), (60_000, "26"), (120_000, "24")],
            expected: ["fire@60000", "clear@120000"]
        ),
        Scenario(
            name: "at_least M of N: holds while M of the last N passed, clears below M",
            keys: "at_least: 3 of 5\nabove: 30",
            readings: [(0, "31"), (1000, "20"), (2000, "31"), (3000, "20"), (4000, "31"), (5000, "20")],
            expected: ["fire@4000", "clear@5000"]
        ),
        Scenario(
            name: "at_least M in D counts matching readings, not consecutive ones, and ages out",
            keys: "at_least: 2 in 10s\nequals: open",
            readings: [(0, "open"), (1000, "closed"), (2000, "open")],
            until: 20_000,
            expected: ["fire@2000", "clear@10001"],
            topic: "sensors/d1/door"
        ),
        Scenario(
            name: "times M in D counts openings, not open readings: one long opening is one time",
            keys: "times: 2 in 1h\nequals: open",
            readings: [(0, "open"), (60_000, "open"), (120_000, "open"), (180_000, "open"), (240_000, "closed")],
            expected: [],
            topic: "sensors/d1/door"
        ),
        Scenario(
            name: "times M in D fires at the M-th opening and clears on the clock when the first ages out",
            keys: "times: 3 in 10m\nequals: open",
            readings: [
                (0, "open"), (10_000, "closed"), (20_000, "open"), (25_000, "open"), (30_000, "closed"),
                (40_000, "open"), (50_000, "closed"),
            ],
            until: 700_000,
            expected: ["fire@40000", "clear@600001"],
            topic: "sensors/d1/door"
        ),
        Scenario(
            name: "times: an unusable reading between two open ones is not a new opening",
            keys: "times: 2 in 1h\nequals: open",
            readings: [(0, "open"), (1000, "{}"), (2000, "open")],
            expected: [],
            topic: "sensors/d1/door"
        ),
        Scenario(
            name: "times with a numeric threshold: crossings above 30, not readings above it",
            keys: "times: 2 in 1m\nabove: 30",
            readings: [(0, "31"), (1000, "35"), (2000, "29"), (3000, "31")],
            expected: ["fire@3000"]
        ),
        Scenario(
            name: "stale alone: fires when the sensor went silent and clears on its next reading",
            keys: "stale: 5m",
            readings: [(0, "21"), (60_000, "21"), (400_000, "22"), (500_000, "\"open\"")],
            until: 1_000_000,
            expected: ["fire@360000", "clear@400000", "fire@800000"]
        ),
        Scenario(
            name: "stale alone: a string reading keeps it quiet like a number",
            keys: "stale: 1m",
            readings: [(0, "open"), (50_000, "closed"), (100_000, "open")],
            until: 150_000,
            expected: [],
            topic: "sensors/d1/door"
        ),
        Scenario(
            name: "an unusable reading is left out of a window: the window's value stands",
            keys: "avg: 3\nabove: 30",
            readings: [(0, "40"), (1000, "40"), (2000, "\"x\""), (3000, "40")],
            expected: ["fire@3000"]
        ),
        Scenario(
            name: "keep_firing_for: clears once the condition has not held for it without a break",
            keys: "above: 30\nkeep_firing_for: 5s",
            readings: [(0, "35"), (1000, "25"), (3000, "35"), (4000, "25")],
            until: 20_000,
            expected: ["fire@0", "clear@9000"]
        ),
        Scenario(
            name: "keep_firing_for: an unknown result does not start the wait",
            keys: "above: 30\nkeep_firing_for: 5s",
            readings: [(0, "35"), (1000, "\"x\""), (2000, "\"x\"")],
            until: 20_000,
            expected: ["fire@0"]
        ),
        Scenario(
            name: "keep_firing_for with on_unknown clear: unknown counts as not holding",
            keys: "above: 30\nkeep_firing_for: 5s\non_unknown: clear",
            readings: [(0, "35"), (1000, "\"x\"")],
            until: 20_000,
            expected: ["fire@0", "clear@6000"]
        ),
        Scenario(
            name: "a schedule's start is a clock event: a condition that holds fires at 'from'",
            keys: "above: 30\nactive: {from: \"08:00\", to: \"09:00\"}",
            readings: [(monday + 7 * hour + 59 * 60_000, "35")],
            until: monday + 8 * hour,
            expected: ["fire@\(monday + 8 * hour)"]
        ),
        Scenario(
            name: "a schedule's end clears a firing instance with no reading (outside_active: clear)",
            keys: "above: 30\nactive: {from: \"08:00\", to: \"09:00\"}",
            readings: [(monday + 8 * hour + 60_000, "35")],
            until: monday + 10 * hour,
            expected: ["fire@\(monday + 8 * hour + 60_000)", "clear@\(monday + 9 * hour)"]
        ),
        Scenario(
            name: "outside_active: hold keeps firing until the condition clears, and no new fire starts",
            keys: "above: 30\nactive: {from: \"08:00\", to: \"09:00\"}\noutside_active: hold",
            readings: [
                (monday + 8 * hour + 60_000, "35"), (monday + 9 * hour + 60_000, "25"),
                (monday + 9 * hour + 120_000, "35"),
            ],
            until: monday + 10 * hour,
            expected: ["fire@\(monday + 8 * hour + 60_000)", "clear@\(monday + 9 * hour + 60_000)"]
        ),
        Scenario(
            name: "a schedule that ends while 'for' is pending: nothing fires, 'for' restarts at the next start",
            keys: "above: 30\nfor: 10m\nactive: {from: \"08:00\", to: \"09:00\"}",
            readings: [(monday + 8 * hour + 55 * 60_000, "35")],
            until: monday + 24 * hour + 8 * hour + 30 * 60_000,
            expected: ["fire@\(monday + 24 * hour + 8 * hour + 10 * 60_000)"]
        ),
        Scenario(
            name: "a schedule across midnight belongs to the day it starts; other days stay quiet",
            keys: "above: 30\nactive: {days: [mon], from: \"22:00\", to: \"06:00\"}",
            readings: [
                (monday + 23 * hour, "35"), (monday + 24 * hour + 5 * hour, "36"),
                (monday + 48 * hour + 23 * hour, "37"),
            ],
            until: monday + 72 * hour,
            expected: ["fire@\(monday + 23 * hour)", "clear@\(monday + 30 * hour)"]
        ),
        Scenario(
            name: "outside the schedule min_on still defers the clear",
            keys: "above: 30\nmin_on: 30m\nactive: {from: \"08:00\", to: \"09:00\"}",
            readings: [(monday + 8 * hour + 50 * 60_000, "35")],
            until: monday + 10 * hour,
            expected: ["fire@\(monday + 8 * hour + 50 * 60_000)", "clear@\(monday + 9 * hour + 20 * 60_000)"]
        ),
    ])
    func scenario(_ scenario: Scenario) throws {
        let rules = try loadRules(ruleFile(scenario.keys, topic: scenario.topic.replacing("d1", with: "{device}")))
        #expect(
            transitions(rules, scenario.readings, until: scenario.until, topic: scenario.topic) == scenario.expected
        )
    }

    /// Replays `values` on `sensors/d1/temperature`, one a second from 0, through a rule with `keys`.
    func replay(_ keys: String, _ values: [String]) throws -> Replay.Outcome {
        Replay.run(
            try loadRules(ruleFile(keys)),
            readings: values.enumerated().map {
                Reading(topic: "sensors/d1/temperature", payload: $1, timestamp: Int64($0) * 1000)
            }
        )
    }

    /// `replay`'s transitions and flapping changes, as `fire@MS` and `start@MS`.
    func flapRun(_ keys: String, _ values: [String]) throws -> (transitions: [String], flaps: [String]) {
        let outcome = try replay(keys, values)
        let flaps = outcome.flapping.map { event -> String in
            guard case .flapping(_, _, let time, let isFlapping, _) = event else { return "?" }
            return "\(isFlapping ? "start" : "stop")@\(time)"
        }
        return (outcome.transitions.map { "\($0.transition.rawValue)@\($0.timestamp)" }, flaps)
    }

    @Test func flappingHoldsTheStateAndStopsBelowTheLowThreshold() throws {
        // history 6: changes weigh 1.2 (newest) … 0.8 (oldest) over 5 pairs. Alternating readings give 24 %,
        // 46 %, then 66 % at 3 s (≥ 50: flapping); steady ones from 8 s give 76, 54, 34, then 16 % at 12 s (< 20).
        let values = ["35", "25", "35", "25", "35", "25", "35", "25"] + Array(repeating: "35", count: 6)
        let run = try flapRun("above: 30\nflapping: {history: 6, low: 20, high: 50, state: hold}", values)
        #expect(run.flaps == ["start@3000", "stop@12000"])
        // Held firing from 3 s: the 25s at 3, 5 and 7 s clear nothing.
        #expect(run.transitions == ["fire@0", "clear@1000", "fire@2000"])
    }

    @Test func flapStateFireHoldsTheInstanceFiring() throws {
        // history 4 (weights 1.2, 1.0, 0.8 over 3 pairs): 40 % at 1 s, 73 % at 2 s (≥ 60: flapping), and the
        // steady end still 60 % (≥ 10): it stays flapping, held firing.
        let run = try flapRun(
            "above: 30\nflapping: {history: 4, low: 10, high: 60, state: fire}",
            ["25", "35", "25", "35", "25", "25"]
        )
        #expect(run.flaps == ["start@2000"])
        #expect(run.transitions == ["fire@1000"])
    }

    @Test func flapStateClearClearsAFiringInstanceWithTheReason() throws {
        let outcome = try replay(
            "above: 30\nflapping: {history: 4, low: 10, high: 60, state: clear}",
            ["25", "35", "25", "35"]
        )
        // Fired at 1 s; flapping at 2 s clears it with the flapping reason; the 35 at 3 s does not fire.
        #expect(outcome.transitions.map { "\($0.transition.rawValue)@\($0.timestamp)" } == ["fire@1000", "clear@2000"])
        #expect(outcome.transitions.last?.reason.hasPrefix("flapping (73 % of its last results changed)") == true)
    }

    @Test func ruleTestsShowWhenAnInstanceStartsFlapping() throws {
        let suite = try RuleTestSuite.parse(
            RuleSource(
                path: "t.test.yaml",
                text: """
                    rule_files: [r.yaml]
                    tests:
                      - name: flaps
                        readings:
                          - {at: 0s, every: 1s, topic: sensors/d1/temperature, values: [35, 25, 35, 25]}
                        expect:
                          - {at: 0s, rule: r, transition: fire}
                          - {at: 1s, rule: r, transition: clear}
                          - {at: 2s, rule: r, transition: fire}
                    """
            )
        )
        let results = suite.run(with: try loadRules(ruleFile("above: 30\nflapping: {history: 6, low: 20, high: 50}")))
        #expect(results.first?.passed == true)
        #expect(results.first?.notes == ["3s r device=d1 started flapping (66 % of its last results changed)"])
    }

    @Test func aWindowSurvivesARestart() throws {
        let rules = try loadRules(ruleFile("avg: 1m\nabove: 30"))
        var evaluator = Evaluator(ruleSet: rules)
        var events: [EvaluationEvent] = []
        for (time, value) in [(0, "40"), (10_000, "20"), (20_000, "20")] as [(Int64, String)] {
            evaluator.process(Reading(topic: "sensors/d1/temperature", payload: value, timestamp: time), into: &events)
        }
        let saved = evaluator.snapshotAll()
        #expect(saved.first?.window?.times == [0, 10_000, 20_000])
        var restarted = Evaluator(ruleSet: rules)
        restarted.restore(saved, now: 30_000)
        var after: [EvaluationEvent] = []
        // With the restored readings the average is (40 + 20 + 20 + 50) / 4 = 32.5: it fires.
        restarted.process(Reading(topic: "sensors/d1/temperature", payload: "50", timestamp: 30_000), into: &after)
        #expect(after.contains { if case .transition(let record) = $0 { record.transition == .fire } else { false } })
        let report = restarted.instanceReports().first?.window
        #expect(report?.samples == 4)
        #expect(report?.value == 32.5)
    }

    /// `count: 1m` with `max_samples: 12` and 14 readings within the minute used to say 12, silently; the value is
    /// unknown, with the reason, until the dropped readings would have left the window.
    @Test func aWindowPastMaxSamplesIsUnknownWithTheReasonNotWrong() throws {
        let rules = try loadRules(ruleFile("count: 1m\nmax_samples: 12\nabove: 100"))
        var evaluator = Evaluator(ruleSet: rules)
        var events: [EvaluationEvent] = []
        for index in 0..<14 {
            let reading = Reading(topic: "sensors/d1/temperature", payload: "20", timestamp: Int64(index) * 1000)
            evaluator.process(reading, into: &events)
        }
        let report = try #require(evaluator.instanceReports().first?.window)
        #expect(report.value == nil)
        #expect(
            report.unknownBecause
                == "max_samples was reached: readings inside the window were dropped (raise max_samples)"
        )
        #expect(report.droppedSamples == 2)
        // The second dropped reading (at 1 s) leaves the window at 61.001 s: 12 readings then, all kept.
        evaluator.advance(to: 61_001, into: &events)
        #expect(evaluator.instanceReports().first?.window?.value == 12)
    }

    /// `times` keeps its openings and whether the last reading was open across a restart: a door still open
    /// after the restart is not opened again.
    @Test func timesSurvivesARestart() throws {
        let rules = try loadRules(ruleFile("times: 2 in 1h\nequals: open", topic: "sensors/{device}/door"))
        var evaluator = Evaluator(ruleSet: rules)
        var events: [EvaluationEvent] = []
        for (time, value) in [(0, "open"), (10_000, "open")] as [(Int64, String)] {
            evaluator.process(Reading(topic: "sensors/d1/door", payload: value, timestamp: time), into: &events)
        }
        let saved = evaluator.snapshotAll()
        #expect(saved.first?.window?.times == [0])
        #expect(saved.first?.window?.lastPassed == true)
        var restarted = Evaluator(ruleSet: rules)
        restarted.restore(saved, now: 20_000)
        var after: [EvaluationEvent] = []
        restarted.process(Reading(topic: "sensors/d1/door", payload: "open", timestamp: 20_000), into: &after)
        #expect(!after.contains { if case .transition = $0 { true } else { false } })
        for (time, value) in [(30_000, "closed"), (40_000, "open")] as [(Int64, String)] {
            restarted.process(Reading(topic: "sensors/d1/door", payload: value, timestamp: time), into: &after)
        }
        #expect(after.contains { if case .transition(let record) = $0 { record.transition == .fire } else { false } })
    }

    /// `--state-dir` journals changed instances: every reading that enters a window changes its instance.
    @Test func everyReadingIntoAWindowIsJournalled() throws {
        var evaluator = Evaluator(ruleSet: try loadRules(ruleFile("avg: 1m\nabove: 30")))
        evaluator.tracksChanges = true
        var events: [EvaluationEvent] = []
        evaluator.process(Reading(topic: "sensors/d1/temperature", payload: "20", timestamp: 0), into: &events)
        _ = evaluator.takeChangedInstances()
        evaluator.process(Reading(topic: "sensors/d1/temperature", payload: "21", timestamp: 1000), into: &events)
        #expect(evaluator.takeChangedInstances().first?.window?.values == [20, 21])
    }

    @Test func aReloadThatChangesOnlyAWindowsLengthRestartsThatWindowAndSaysSo() throws {
        let rules = try loadRules(ruleFile("avg: 1m\nabove: 30"))
        var evaluator = Evaluator(ruleSet: rules)
        var events: [EvaluationEvent] = []
        evaluator.process(Reading(topic: "sensors/d1/temperature", payload: "40", timestamp: 0), into: &events)
        #expect(evaluator.instanceReports().first?.state == .firing)
        let reloaded = evaluator.replaceRules(with: try loadRules(ruleFile("avg: 2m\nabove: 30")))
        #expect(reloaded == [.windowRestarted(ruleID: "r", window: "avg 2m")])
        let report = evaluator.instanceReports().first
        #expect(report?.state == .firing)
        #expect(report?.window?.samples == 0)
        // Anything else changed: the instance starts over, as before.
        let other = evaluator.replaceRules(with: try loadRules(ruleFile("avg: 2m\nabove: 31")))
        #expect(other.isEmpty)
        #expect(evaluator.instanceCount == 0)
    }

    @Test func aCombinedRuleWithAWindowLeafClearsWhenItsWindowEmpties() throws {
        let text = combinedRule(
            """
            all:
              - {topic: "sensors/{room}/humidity", avg: 10s, above: 80}
              - {topic: "sensors/{room}/temperature", above: 25}
            """
        )
        let outcome = Replay.run(
            try loadRules(text),
            readings: [
                Reading(topic: "sensors/r1/humidity", payload: "85", timestamp: 0),
                Reading(topic: "sensors/r1/temperature", payload: "26", timestamp: 1000),
                Reading(topic: "sensors/r1/humidity", payload: "70", timestamp: 5000),
            ],
            end: 30_000
        )
        // avg(85, 70) = 77.5 at 5 s: false. The window then holds only 70 until it empties (unknown: keep).
        #expect(outcome.transitions.map { "\($0.transition.rawValue)@\($0.timestamp)" } == ["fire@1000", "clear@5000"])
        var evaluator = Evaluator(ruleSet: try loadRules(text))
        var events: [EvaluationEvent] = []
        evaluator.process(Reading(topic: "sensors/r1/humidity", payload: "85", timestamp: 0), into: &events)
        evaluator.process(Reading(topic: "sensors/r1/humidity", payload: "83", timestamp: 1000), into: &events)
        let leaf = evaluator.instanceReports().first?.conditions.first
        #expect(leaf?.window?.value == 84 && leaf?.window?.samples == 2)
        evaluator.advance(to: 20_000, into: &events)
        let emptied = evaluator.instanceReports().first?.conditions.first
        #expect(emptied?.truth == .unknown)
        #expect(emptied?.unknownBecause == "window: no reading in the window")
    }

    @Test func aGroupVotesOnEachMembersWindow() throws {
        let text = """
            rules:
              - id: probes
                topic: sensors/{tank}/{probe}/temperature
                avg: 3
                above: 90
                group_by: [tank]
                match: at_least 2
            """
        var readings: [Reading] = []
        for (index, probe) in ["p1", "p2", "p1", "p2", "p1", "p2"].enumerated() {
            readings.append(
                Reading(topic: "sensors/t1/\(probe)/temperature", payload: "95", timestamp: Int64(index) * 1000)
            )
        }
        let outcome = Replay.run(try loadRules(text), readings: readings)
        // p1 has three readings at 4 s, p2 at 5 s: two members hold then.
        #expect(outcome.transitions.map { "\($0.transition.rawValue)@\($0.timestamp)" } == ["fire@5000"])
    }
}

/// Reason texts show a number as people write it: a window's floating-point residue is rounded away.
@Suite struct ReadableNumberTests {
    @Test(arguments: [
        (30.706999999999994 as Double, "30.707"), (30.200000000000003, "30.2"), (25.5, "25.5"), (-18.98, "-18.98"),
        (0.1 + 0.2, "0.3"), (123_456_789_012.0, "123456789012"), (1e-7 * 3, "3e-07"), (0.0, "0"),
    ])
    func readable(_ value: Double, _ text: String) {
        #expect(Evaluator.readable(value) == text)
    }

    @Test func aWindowsAverageReadsRoundedInTheReason() throws {
        let outcome = Replay.run(
            try loadRules(ruleFile("avg: 1m\nabove: 30")),
            readings: ["29.9", "30.2"].enumerated().map {
                Reading(topic: "sensors/d1/temperature", payload: $1, timestamp: Int64($0) * 1000)
            }
        )
        #expect(
            outcome.transitions.first?.reason == "avg 1m = 30.05 above 30",
            "(29.9 + 30.2) / 2 = 30.049999999999997"
        )
        #expect(outcome.transitions.allSatisfy { !$0.reason.contains("0000000") })
    }
}
