import FileFormats
import Rules
import Testing

/// Runs readings `(ms, topic, payload)` through a rule file and returns the transitions as
/// `fire room=r1@1000` (labels in the rule's order).
func combinedTransitions(_ text: String, _ readings: [(Int64, String, String)], until: Int64? = nil) throws -> [String]
{
    let outcome = Replay.run(
        try loadRules(text),
        readings: readings.map { Reading(topic: $0.1, payload: $0.2, timestamp: $0.0) },
        end: until
    )
    return outcome.transitions.map { record in
        let labels = record.labels.map(\.description).joined(separator: ",")
        return "\(record.transition.rawValue)\(labels.isEmpty ? "" : " \(labels)")@\(record.timestamp)"
    }
}

/// A rule file with one rule `r` made of `body` (indented YAML lines) and a publish on fire and clear.
func combinedRule(_ body: String, action: String = "actuators/{room}/vent/set") -> String {
    let indented = body.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n")
    return """
        rules:
          - id: r
        \(indented)
            on_fire:
              - publish: {topic: "\(action)", payload: {state: "on"}}
            on_clear:
              - publish: {topic: "\(action)", payload: {state: "off"}}

        """
}

@Suite("Combined conditions")
struct CombinedRuleTests {
    struct Scenario: Sendable, CustomTestStringConvertible {
        var name: String
        var body: String
        var readings: [(Int64, String, String)]
        var until: Int64?
        var expected: [String]
        var action = "actuators/{room}/vent/set"
        var testDescription: String { name }
    }

    static let humidAndWarm = """
        all:
          - {topic: "sensors/{room}/humidity", above: 80, clear: 75}
          - {topic: "sensors/{room}/temperature", above: 25, clear: 24}
        """

    @Test(arguments: [
        Scenario(
            name: "all waits for every leaf: humidity alone does not fire",
            body: humidAndWarm,
            readings: [(0, "sensors/r1/humidity", "85"), (1000, "sensors/r1/temperature", "20")],
            expected: []
        ),
        Scenario(
            name: "all fires when the last leaf holds, each leaf keeps its own hysteresis",
            body: humidAndWarm,
            readings: [
                (0, "sensors/r1/humidity", "85"), (1000, "sensors/r1/temperature", "26"),
                (2000, "sensors/r1/humidity", "78"),  // latched: still above its clear level
                (3000, "sensors/r1/humidity", "74"),  // at its clear level: the leaf is false
                (4000, "sensors/r1/humidity", "78"),  // not latched: 78 is not above 80
                (5000, "sensors/r1/humidity", "81"),
            ],
            expected: ["fire room=r1@1000", "clear room=r1@3000", "fire room=r1@5000"]
        ),
        Scenario(
            name: "a leaf latches whether or not the rule fired",
            body: humidAndWarm,
            readings: [
                (0, "sensors/r1/humidity", "85"), (1000, "sensors/r1/humidity", "77"),
                (2000, "sensors/r1/temperature", "26"),
            ],
            expected: ["fire room=r1@2000"]
        ),
        Scenario(
            name: "instances join on the capture: rooms do not mix",
            body: humidAndWarm,
            readings: [(0, "sensors/r1/humidity", "85"), (1000, "sensors/r2/temperature", "26")],
            expected: []
        ),
        Scenario(
            name: "an unusable reading makes a leaf unknown: keep holds the instance as it is",
            body: humidAndWarm,
            readings: [
                (0, "sensors/r1/humidity", "85"), (1000, "sensors/r1/temperature", "26"),
                (2000, "sensors/r1/temperature", #"{"value": "n/a"}"#), (3000, "sensors/r1/humidity", "90"),
                (4000, "sensors/r1/humidity", "60"),  // a known false leaf decides all, the unknown one aside
            ],
            expected: ["fire room=r1@1000", "clear room=r1@4000"]
        ),
        Scenario(
            name: "on_unknown: clear counts an unknown combination as not holding",
            body: humidAndWarm + "\non_unknown: clear",
            readings: [
                (0, "sensors/r1/humidity", "85"), (1000, "sensors/r1/temperature", "26"),
                (2000, "sensors/r1/temperature", #"{"value": "n/a"}"#),
            ],
            expected: ["fire room=r1@1000", "clear room=r1@2000"]
        ),
        Scenario(
            name: "on_unknown: fire counts an unknown combination as holding",
            body: humidAndWarm + "\non_unknown: fire",
            readings: [(0, "sensors/r1/humidity", "85")],
            expected: ["fire room=r1@0"]
        ),
        Scenario(
            name: "a false leaf decides all even when another is unknown",
            body: humidAndWarm + "\non_unknown: fire",
            readings: [(0, "sensors/r1/humidity", "50")],
            expected: []
        ),
        Scenario(
            name: "any fires on one true leaf while the other never reported",
            body: """
                any:
                  - {topic: "sensors/{room}/smoke", equals: true}
                  - {topic: "sensors/{room}/temperature", above: 60}
                """,
            readings: [(0, "sensors/r1/smoke", "true"), (1000, "sensors/r1/smoke", "false")],
            expected: ["fire room=r1@0"]  // then unknown (temperature never reported): kept
        ),
        Scenario(
            name: "a stale leaf inside not is unknown, not true: the rule keeps its state",
            body: """
                all:
                  - {topic: "sensors/{room}/humidity", above: 80}
                  - not: {topic: "sensors/{room}/window", equals: open, stale: 1m}
                """,
            readings: [(0, "sensors/r1/window", "closed"), (0, "sensors/r1/humidity", "85")],
            until: 120_000,
            expected: ["fire room=r1@0"]
        ),
        Scenario(
            name: "a leaf going stale is a clock event: on_unknown clear clears with no reading",
            body: """
                all:
                  - {topic: "sensors/{room}/humidity", above: 80}
                  - not: {topic: "sensors/{room}/window", equals: open, stale: 1m}
                on_unknown: clear
                """,
            readings: [(0, "sensors/r1/window", "closed"), (0, "sensors/r1/humidity", "85")],
            until: 120_000,
            expected: ["fire room=r1@0", "clear room=r1@60000"]
        ),
        Scenario(
            name: "not fires when its leaf is false",
            body: "not: {topic: \"sensors/{room}/window\", equals: open}",
            readings: [(0, "sensors/r1/window", "open"), (1000, "sensors/r1/window", "closed")],
            expected: ["fire room=r1@1000"]
        ),
        Scenario(
            name: "a leaf with no capture is shared by every instance",
            body: """
                all:
                  - {topic: "sensors/{room}/temperature", above: 25}
                  - {topic: "weather/outdoor/temperature", below: 20}
                """,
            readings: [
                (0, "sensors/r1/temperature", "26"), (1000, "sensors/r2/temperature", "27"),
                (2000, "weather/outdoor/temperature", "15"), (3000, "sensors/r3/temperature", "30"),
                (4000, "weather/outdoor/temperature", "21"),
            ],
            expected: [
                "fire room=r1@2000", "fire room=r2@2000", "fire room=r3@3000", "clear room=r1@4000",
                "clear room=r2@4000", "clear room=r3@4000",
            ]
        ),
        Scenario(
            name: "a reading on two leaves moves the instance once, with both leaves up to date",
            body: """
                any:
                  - {topic: "sensors/{room}/temperature", above: 50}
                  - {topic: "sensors/{room}/temperature", below: 10}
                """,
            readings: [
                (0, "sensors/r1/temperature", "60"), (1000, "sensors/r1/temperature", "5"),
                (2000, "sensors/r1/temperature", "20"),
            ],
            expected: ["fire room=r1@0", "clear room=r1@2000"]
        ),
        Scenario(
            name: "for counts from when the combination became true",
            body: humidAndWarm + "\nfor: 10s",
            readings: [(0, "sensors/r1/humidity", "85"), (2000, "sensors/r1/temperature", "26")],
            until: 20_000,
            expected: ["fire room=r1@12000"]
        ),
        Scenario(
            name: "an unknown leaf does not reset a running for under keep",
            body: humidAndWarm + "\nfor: 10s",
            readings: [
                (0, "sensors/r1/humidity", "85"), (2000, "sensors/r1/temperature", "26"),
                (5000, "sensors/r1/temperature", "garbage"),
            ],
            until: 20_000,
            expected: ["fire room=r1@12000"]
        ),
        Scenario(
            name: "a known false leaf resets a running for",
            body: humidAndWarm + "\nfor: 10s",
            readings: [
                (0, "sensors/r1/humidity", "85"), (2000, "sensors/r1/temperature", "26"),
                (5000, "sensors/r1/temperature", "20"),
            ],
            until: 20_000,
            expected: []
        ),
        Scenario(
            name: "a reading at the for deadline that changes no leaf: the timer fires it at that time",
            body: humidAndWarm + "\nfor: 10s",
            readings: [
                (0, "sensors/r1/humidity", "85"), (2000, "sensors/r1/temperature", "26"),
                (12_000, "sensors/r1/temperature", "27"),
            ],
            until: 20_000,
            expected: ["fire room=r1@12000"]
        ),
        Scenario(
            name: "a reading that changes no leaf still moves that leaf's stale deadline",
            body: """
                all:
                  - {topic: "sensors/{room}/humidity", above: 80, stale: 1m}
                  - {topic: "sensors/{room}/temperature", above: 25}
                on_unknown: clear
                """,
            readings: [
                (0, "sensors/r1/humidity", "85"), (0, "sensors/r1/temperature", "26"),
                (50_000, "sensors/r1/humidity", "86"),
            ],
            until: 120_000,
            expected: ["fire room=r1@0", "clear room=r1@110000"]
        ),
        Scenario(
            name: "nested any inside all",
            body: """
                all:
                  - {topic: "sensors/{room}/humidity", above: 80}
                  - any:
                      - {topic: "sensors/{room}/temperature", above: 25}
                      - {topic: "sensors/{room}/co2", above: 1000}
                """,
            readings: [
                (0, "sensors/r1/humidity", "85"), (1000, "sensors/r1/co2", "1200"),
                (2000, "sensors/r1/co2", "900"), (3000, "sensors/r1/temperature", "20"),
            ],
            expected: ["fire room=r1@1000", "clear room=r1@3000"]
        ),
        Scenario(
            name: "two of three probes vote",
            body: """
                topic: sensors/{tank}/{probe}/temperature
                above: 90
                group_by: [tank]
                match: at_least 2
                """,
            readings: [
                (0, "sensors/t1/p1/temperature", "95"), (1000, "sensors/t1/p2/temperature", "80"),
                (2000, "sensors/t1/p3/temperature", "96"), (3000, "sensors/t1/p1/temperature", "85"),
                (4000, "sensors/t2/p1/temperature", "99"),
            ],
            expected: ["fire tank=t1@2000", "clear tank=t1@3000"],
            action: "actuators/{tank}/alarm/set"
        ),
        Scenario(
            name: "match all: a member that goes stale makes the group unknown, kept under keep",
            body: """
                topic: sensors/{tank}/{probe}/temperature
                above: 90
                stale: 1m
                group_by: [tank]
                match: all
                """,
            readings: [
                (0, "sensors/t1/p1/temperature", "95"), (0, "sensors/t1/p2/temperature", "95"),
                (30_000, "sensors/t1/p1/temperature", "95"), (90_000, "sensors/t1/p1/temperature", "95"),
            ],
            until: 100_000,
            expected: ["fire tank=t1@0"],
            action: "actuators/{tank}/alarm/set"
        ),
        Scenario(
            name: "match all with on_unknown clear: the stale member clears the group at its deadline",
            body: """
                topic: sensors/{tank}/{probe}/temperature
                above: 90
                stale: 1m
                group_by: [tank]
                match: all
                on_unknown: clear
                """,
            readings: [
                (0, "sensors/t1/p1/temperature", "95"), (0, "sensors/t1/p2/temperature", "95"),
                (30_000, "sensors/t1/p1/temperature", "95"),
            ],
            until: 100_000,
            expected: ["fire tank=t1@0", "clear tank=t1@60000"],
            action: "actuators/{tank}/alarm/set"
        ),
        Scenario(
            name: "match any: members keep their own hysteresis",
            body: """
                topic: sensors/{tank}/{probe}/temperature
                above: 90
                clear: 85
                group_by: tank
                """,
            readings: [
                (0, "sensors/t1/p1/temperature", "95"), (1000, "sensors/t1/p1/temperature", "88"),
                (2000, "sensors/t1/p2/temperature", "70"), (3000, "sensors/t1/p1/temperature", "85"),
            ],
            expected: ["fire tank=t1@0", "clear tank=t1@3000"],
            action: "actuators/{tank}/alarm/set"
        ),
    ])
    func scenario(_ scenario: Scenario) throws {
        let text = combinedRule(scenario.body, action: scenario.action)
        #expect(try combinedTransitions(text, scenario.readings, until: scenario.until) == scenario.expected)
    }

    @Test func actionsSeeTheCausingValueNamedLeavesAndTheCount() throws {
        let rules = try loadRules(
            """
            rules:
              - id: vent
                all:
                  - {topic: "sensors/{room}/humidity", above: 80, name: humidity}
                  - {topic: "sensors/{room}/temperature", above: 25, name: temperature}
                on_fire:
                  - publish: {topic: "actuators/{room}/vent/set", payload: {h: "{humidity}", t: "{temperature}"}}
                  - log: "{room} humid {humidity} and warm {temperature}: {value}"
              - id: probes
                topic: sensors/{tank}/{probe}/temperature
                above: 90
                group_by: [tank]
                match: at_least 2
                on_fire:
                  - log: "{tank}: {count} probes hot, last {value}"
            """
        )
        let outcome = Replay.run(
            rules,
            readings: [
                Reading(topic: "sensors/r1/humidity", payload: "85", timestamp: 0),
                Reading(topic: "sensors/r1/temperature", payload: "26.5", timestamp: 1000),
                Reading(topic: "sensors/t1/a/temperature", payload: "91", timestamp: 2000),
                Reading(topic: "sensors/t1/b/temperature", payload: "92", timestamp: 3000),
            ],
            end: nil
        )
        #expect(
            outcome.actions.map(\.action) == [
                .publish(
                    topic: "actuators/r1/vent/set",
                    payload: .object([
                        ("h", .number(85)), ("t", .number(26.5)), ("rule", .string("vent")),
                        ("reason", .string(outcome.actions[0].reason)), ("value", .number(26.5)), ("ts", .number(1000)),
                    ]),
                    qos: 1,
                    retain: false
                ),
                .log(message: "r1 humid 85 and warm 26.5: 26.5"),
                .log(message: "t1: 2 probes hot, last 92"),
            ]
        )
        #expect(outcome.actions[0].reason == "all(humidity=85 (true), temperature=26.5 (true)) holds")
        #expect(outcome.actions[2].reason == "2 of 2 above 90 (match: at_least 2)")
        // The transition carries every leaf that decided it, for the audit line.
        let audit = AuditLine.line(for: outcome.transitions[0], in: rules)
        #expect(
            audit.contains(
                #""conditions":[{"name":"humidity","topic":"sensors/r1/humidity","labels":{"room":"r1"},"value":85,"last_reading_at":0,"truth":"true"}"#
            )
        )
    }

    @Test func instanceReportsShowEachLeafAndWhyItIsUnknown() throws {
        var evaluator = Evaluator(ruleSet: try loadRules(combinedRule(Self.humidAndWarm)))
        var events: [EvaluationEvent] = []
        evaluator.process(Reading(topic: "sensors/r1/humidity", payload: "85", timestamp: 0), into: &events)
        let report = try #require(evaluator.instanceReports().first)
        #expect(report.labels == [Label(name: "room", value: "r1")])
        #expect(report.conditions.map(\.truth) == [.true, .unknown])
        #expect(report.conditions.map(\.unknownBecause) == [nil, "no reading yet"])
        #expect(report.conditions.map(\.topic) == ["sensors/r1/humidity", "sensors/r1/temperature"])
        let json = report.json.jsonText
        #expect(json.contains(#""conditions":[{"topic":"sensors/r1/humidity""#))
    }

    @Test func aRestartInThePendingForOfTwoSensorsFiresOnTime() throws {
        let rules = try loadRules(combinedRule(Self.humidAndWarm + "\nfor: 10s"))
        var before = Evaluator(ruleSet: rules)
        var events: [EvaluationEvent] = []
        before.process(Reading(topic: "sensors/r1/humidity", payload: "85", timestamp: 0), into: &events)
        before.process(Reading(topic: "sensors/r1/temperature", payload: "26", timestamp: 2000), into: &events)
        let saved = before.snapshotAll()
        #expect(saved.first?.conditions?.map(\.latched) == [true, true])

        var after = Evaluator(ruleSet: rules)
        #expect(after.restore(saved, now: 5000) == 1)
        events = []
        after.advance(to: 11_999, into: &events)
        #expect(events.isEmpty)
        after.advance(to: 12_000, into: &events)
        let fired = events.compactMap { if case .transition(let record) = $0 { record.timestamp } else { nil } }
        #expect(fired == [12_000])
        // The restored leaves are latched: the humidity leaf holds at 78 (above its clear level 75).
        events = []
        after.process(Reading(topic: "sensors/r1/humidity", payload: "78", timestamp: 13_000), into: &events)
        #expect(!events.contains { if case .transition = $0 { true } else { false } })
    }

    @Test func aRestoredGroupKeepsItsMembers() throws {
        let rules = try loadRules(
            combinedRule(
                "topic: sensors/{tank}/{probe}/temperature\nabove: 90\ngroup_by: [tank]\nmatch: at_least 2",
                action: "actuators/{tank}/alarm/set"
            )
        )
        var before = Evaluator(ruleSet: rules)
        var events: [EvaluationEvent] = []
        for (time, probe) in [(0, "a"), (1000, "b")] {
            before.process(
                Reading(topic: "sensors/t1/\(probe)/temperature", payload: "95", timestamp: Int64(time)),
                into: &events
            )
        }
        var after = Evaluator(ruleSet: rules)
        after.restore(before.snapshotAll(), now: 5000)
        #expect(after.instanceReports().first?.conditions.count == 2)
        events = []
        after.process(Reading(topic: "sensors/t1/a/temperature", payload: "80", timestamp: 6000), into: &events)
        let cleared = events.compactMap { if case .transition(let record) = $0 { record.transition } else { nil } }
        #expect(cleared == [.clear])
    }

    @Test func aReloadThatKeepsTheRuleKeepsItsLeaves() throws {
        let text = combinedRule(Self.humidAndWarm)
        var evaluator = Evaluator(ruleSet: try loadRules(text))
        var events: [EvaluationEvent] = []
        evaluator.process(Reading(topic: "sensors/r1/humidity", payload: "85", timestamp: 0), into: &events)
        evaluator.replaceRules(with: try loadRules("# moved\n" + text))
        evaluator.process(Reading(topic: "sensors/r1/temperature", payload: "26", timestamp: 1000), into: &events)
        #expect(events.contains { if case .transition(let record) = $0 { record.transition == .fire } else { false } })
    }

    /// The hashes that the version before combinations computed for the shipped single-condition rules
    /// (built from a6fb894): a snapshot it saved in `--state-dir` must still restore after an upgrade.
    @Test func singleConditionsKeepTheDefinitionHashesOfEarlierVersions() throws {
        let rules = try RuleLoader.load([
            RuleSource(path: "server-room.yaml", text: Self.serverRoomBeforeCombinations),
            RuleSource(path: "cold-chain.yaml", text: Self.coldChainBeforeCombinations),
        ])
        #expect(
            rules.rules.map { "\($0.id) \($0.definitionHash)" } == [
                "rack-cooling 9a33d9c6ccaaaaf6", "rack-overheat 83c0dd916f5be548",
                "freezer-door-open 65f30137f8e0c804", "freezer-warm d8619c807fd7e4d7",
            ]
        )
    }

    static let serverRoomBeforeCombinations = """
            # Server room: cool a rack that runs hot, with hysteresis so the cooling does not flap.
            rules:
              - id: rack-cooling
                description: Switch a rack's cooling on above 30 °C for 5 s; off again at 28 °C, after at least 15 s.
                topic: sensors/{rack}/temperature
                field: value
                above: 30
                clear: 28
                for: 5s
                cooldown: 10s
                min_on: 15s
                severity: warning
                on_fire:
                  - publish: {topic: "actuators/{rack}/cooling/set", payload: {state: "on"}}
                on_clear:
                  - publish: {topic: "actuators/{rack}/cooling/set", payload: {state: "off"}}

              - id: rack-overheat
                description: Page someone when a rack passes 40 °C; a silent sensor for 2 minutes is as bad.
                topic: sensors/{rack}/temperature
                above: 40
                clear: 35
                stale: 2m
                severity: critical
                on_fire:
                  - log: "rack {rack} critical: {value} °C (threshold {threshold})"
        """

    static let coldChainBeforeCombinations = """
            # Cold chain: freezers must stay cold and closed.
            rules:
              - id: freezer-door-open
                description: A freezer door left open for more than 2 minutes.
                topic: sensors/{freezer}/door
                equals: open
                for: 2m
                severity: warning
                on_fire:
                  - publish: {topic: "alerts/{freezer}/door", payload: {state: "open", severity: "{severity}"}}
                on_clear:
                  - publish: {topic: "alerts/{freezer}/door", payload: {state: "closed"}}

              - id: freezer-warm
                description: Run the compressor hard when the freezer is warmer than -15 °C; relax at -20 °C.
                  A cabinet temperature sensor silent for 5 minutes also starts it (fail safe).
                topic: sensors/{freezer}/cabinet_temperature
                above: -15
                clear: -20
                for: 30s
                stale: 5m
                min_off: 1m
                severity: critical
                on_fire:
                  - publish: {topic: "actuators/{freezer}/compressor/set", payload: {state: "on"}}
                on_clear:
                  - publish: {topic: "actuators/{freezer}/compressor/set", payload: {state: "off"}}
        """
}
