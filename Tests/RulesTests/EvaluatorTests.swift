import Rules
import Testing

@Suite("Rule semantics")
struct EvaluatorTests {
    struct Scenario: Sendable, CustomTestStringConvertible {
        var name: String
        var keys: String
        var readings: [(Int64, String)]
        var until: Int64?
        var expected: [String]
        var testDescription: String { name }
    }

    @Test(arguments: [
        // above / below and the value exactly at the threshold
        Scenario(
            name: "above fires only strictly above",
            keys: "above: 30",
            readings: [(0, "30"), (1000, "30.01")],
            expected: ["fire@1000"]
        ),
        Scenario(
            name: "above clears at the threshold itself",
            keys: "above: 30",
            readings: [(0, "31"), (1000, "30")],
            expected: ["fire@0", "clear@1000"]
        ),
        Scenario(
            name: "below fires only strictly below",
            keys: "below: 10",
            readings: [(0, "10"), (1000, "9.9"), (2000, "10")],
            expected: ["fire@1000", "clear@2000"]
        ),
        // hysteresis
        Scenario(
            name: "clear hysteresis keeps firing inside the band",
            keys: "above: 30\nclear: 28",
            readings: [(0, "31"), (1000, "29"), (2000, "30.5"), (3000, "28.5"), (4000, "28")],
            expected: ["fire@0", "clear@4000"]
        ),
        Scenario(
            name: "below with clear above it",
            keys: "below: 5\nclear: 8",
            readings: [(0, "4"), (1000, "7"), (2000, "8")],
            expected: ["fire@0", "clear@2000"]
        ),
        // between / outside, inclusive ends
        Scenario(
            name: "between includes both ends",
            keys: "between: [10, 20]",
            readings: [(0, "9"), (1000, "10"), (2000, "20"), (3000, "20.5")],
            expected: ["fire@1000", "clear@3000"]
        ),
        Scenario(
            name: "outside excludes both ends",
            keys: "outside: [10, 20]",
            readings: [(0, "10"), (1000, "20"), (2000, "9.99"), (3000, "10")],
            expected: ["fire@2000", "clear@3000"]
        ),
        // equals
        Scenario(
            name: "equals a string, raw text payload",
            keys: "equals: open",
            readings: [(0, "closed"), (1000, "open"), (2000, "\"closed\"")],
            expected: ["fire@1000", "clear@2000"]
        ),
        Scenario(
            name: "equals a bool",
            keys: "equals: true",
            readings: [(0, "{\"value\": true}"), (1000, "false")],
            expected: ["fire@0", "clear@1000"]
        ),
        Scenario(
            name: "equals a number",
            keys: "equals: 1",
            readings: [(0, "1.0"), (1000, "2")],
            expected: ["fire@0", "clear@1000"]
        ),
        Scenario(
            name: "equals with another type is unknown, not false",
            keys: "equals: true",
            readings: [(0, "true"), (1000, "\"yes\"")],
            expected: ["fire@0"]
        ),
        // for: timers fire without a new reading
        Scenario(
            name: "for fires at its due time with no new reading",
            keys: "above: 30\nfor: 2s",
            readings: [(0, "31")],
            until: 5000,
            expected: ["fire@2000"]
        ),
        Scenario(
            name: "for interrupted by a value below resets",
            keys: "above: 30\nfor: 2s",
            readings: [(0, "31"), (1000, "29"), (1500, "31")],
            until: 10000,
            expected: ["fire@3500"]
        ),
        Scenario(
            name: "a reading at the due time is applied first",
            keys: "above: 30\nfor: 2s",
            readings: [(0, "31"), (2000, "29")],
            until: 5000,
            expected: []
        ),
        Scenario(
            name: "for is not interrupted by one bad reading (keep)",
            keys: "above: 30\nfor: 2s",
            readings: [(0, "31"), (1000, "garbage"), (1500, "{}")],
            until: 5000,
            expected: ["fire@2000"]
        ),
        Scenario(
            name: "not reached before until",
            keys: "above: 30\nfor: 2s",
            readings: [(0, "31")],
            until: 1999,
            expected: []
        ),
        // three-valued: unknown neither fires nor clears by accident
        Scenario(
            name: "an unusable reading keeps a firing instance firing",
            keys: "above: 30",
            readings: [(0, "31"), (1000, "\"n/a\""), (2000, "{\"temp\": 1}"), (3000, "null")],
            expected: ["fire@0"]
        ),
        Scenario(
            name: "on_unknown: clear clears on an unusable reading",
            keys: "above: 30\non_unknown: clear",
            readings: [(0, "31"), (1000, "\"n/a\"")],
            expected: ["fire@0", "clear@1000"]
        ),
        Scenario(
            name: "on_unknown: fire fires on an unusable reading",
            keys: "above: 30\non_unknown: fire",
            readings: [(0, "20"), (1000, "oops")],
            expected: ["fire@1000"]
        ),
        // stale
        Scenario(
            name: "stale fires when the sensor goes silent",
            keys: "above: 30\nstale: 1m",
            readings: [(0, "20")],
            until: 120_000,
            expected: ["fire@60000"]
        ),
        Scenario(
            name: "a good reading after stale clears",
            keys: "above: 30\nstale: 1m",
            readings: [(0, "20"), (90_000, "21")],
            expected: ["fire@60000", "clear@90000"]
        ),
        Scenario(
            name: "readings in time keep stale quiet",
            keys: "above: 30\nstale: 1m",
            readings: [(0, "20"), (50_000, "21"), (100_000, "21")],
            until: 150_000,
            expected: []
        ),
        Scenario(
            name: "only unusable readings still go stale",
            keys: "above: 30\nstale: 1m",
            readings: [(0, "20"), (30_000, "x"), (70_000, "y")],
            expected: ["fire@60000"]
        ),
        Scenario(
            name: "a sensor that only ever sent garbage goes stale, counted from its first reading",
            keys: "above: 30\nstale: 1m",
            readings: [(0, "x"), (30_000, "y")],
            until: 120_000,
            expected: ["fire@60000"]
        ),
        Scenario(
            name: "a usable reading after garbage-only stale clears it",
            keys: "above: 30\nstale: 1m",
            readings: [(0, "x"), (90_000, "20")],
            expected: ["fire@60000", "clear@90000"]
        ),
        // cooldown: deferred, not dropped
        Scenario(
            name: "cooldown defers a clear",
            keys: "above: 30\ncooldown: 10s",
            readings: [(0, "31"), (1000, "20")],
            until: 20_000,
            expected: ["fire@0", "clear@10000"]
        ),
        Scenario(
            name: "a deferred clear is dropped if the value returns",
            keys: "above: 30\ncooldown: 10s",
            readings: [(0, "31"), (1000, "20"), (5000, "35")],
            until: 20_000,
            expected: ["fire@0"]
        ),
        Scenario(
            name: "cooldown defers a re-fire",
            keys: "above: 30\ncooldown: 10s",
            readings: [(0, "31"), (10_000, "20"), (11_000, "31")],
            until: 30_000,
            expected: ["fire@0", "clear@10000", "fire@20000"]
        ),
        // min_on / min_off
        Scenario(
            name: "min_on holds firing",
            keys: "above: 30\nmin_on: 1m",
            readings: [(0, "31"), (1000, "20")],
            until: 120_000,
            expected: ["fire@0", "clear@60000"]
        ),
        Scenario(
            name: "min_off holds inactive after a clear",
            keys: "above: 30\nmin_off: 1m",
            readings: [(0, "31"), (1000, "20"), (2000, "31")],
            until: 120_000,
            expected: ["fire@0", "clear@1000", "fire@61000"]
        ),
        Scenario(
            name: "min_off does not delay the first fire",
            keys: "above: 30\nmin_off: 1m",
            readings: [(0, "31")],
            expected: ["fire@0"]
        ),
        // max_transitions
        Scenario(
            name: "max_transitions holds the state when its window is full, then applies the latest value",
            keys: "above: 30\nmax_transitions: 2 per 1m",
            readings: [(0, "31"), (1000, "20"), (2000, "31")],
            until: 120_000,
            expected: ["fire@0", "clear@1000", "fire@60000"]
        ),
        Scenario(
            name: "a flap that settles back needs no transition",
            keys: "above: 30\nmax_transitions: 2 per 1m",
            readings: [(0, "31"), (1000, "20"), (2000, "31"), (3000, "20")],
            until: 120_000,
            expected: ["fire@0", "clear@1000"]
        ),
        // payload shapes
        Scenario(name: "a bare number payload", keys: "above: 30", readings: [(0, "31")], expected: ["fire@0"]),
        Scenario(
            name: "a nested field",
            keys: "above: 30\nfield: data.temp",
            readings: [(0, "{\"data\": {\"temp\": 31}}")],
            expected: ["fire@0"]
        ),
        Scenario(
            name: "a numeric string is not a number",
            keys: "above: 30",
            readings: [(0, "{\"value\": \"31\"}")],
            expected: []
        ),
    ])
    func scenario(_ scenario: Scenario) throws {
        let rules = try loadRules(ruleFile(scenario.keys))
        #expect(transitions(rules, scenario.readings, until: scenario.until) == scenario.expected)
    }

    @Test func instancesAreIndependentPerCapture() throws {
        let rules = try loadRules(ruleFile("above: 30"))
        let readings = [
            Reading(topic: "sensors/a/temperature", payload: "31", timestamp: 0),
            Reading(topic: "sensors/b/temperature", payload: "20", timestamp: 1),
            Reading(topic: "sensors/b/temperature", payload: "32", timestamp: 2),
            Reading(topic: "sensors/a/temperature", payload: "25", timestamp: 3),
        ]
        let outcome = Replay.run(rules, readings: readings)
        #expect(
            outcome.transitions.map { "\($0.transition)@\($0.timestamp) \($0.labels)" } == [
                "fire@0 [device=a]", "fire@2 [device=b]", "clear@3 [device=a]",
            ]
        )
        guard case .publish(let topic, _, _, _) = outcome.actions[1].action else {
            Issue.record("expected a publish")
            return
        }
        #expect(topic == "actuators/b/x/set")
    }

    /// Topics of one shape share one resolution with slots counted from the topic's first instance; a topic
    /// whose instances are not made together (one rule's instance already exists) keeps its own. Either way
    /// each reading reaches its own instances.
    @Test func topicsOfOneShapeReachTheirOwnInstances() throws {
        let rules = try loadRules(
            """
            rules:
              - id: per-device
                topic: sensors/{device}/temperature
                above: 30
                on_fire: [{publish: {topic: "actuators/{device}/a/set", payload: "on"}}]
              - id: any-device
                topic: sensors/+/temperature
                above: 40
                on_fire: [{publish: {topic: "actuators/all/set", payload: "on"}}]
              - id: per-device-too
                topic: sensors/{device}/temperature
                above: 50
                on_fire: [{publish: {topic: "actuators/{device}/c/set", payload: "on"}}]

            """
        )
        var readings: [Reading] = []
        for (index, device) in ["a", "b", "c", "d"].enumerated() {
            readings.append(Reading(topic: "sensors/\(device)/temperature", payload: "20", timestamp: Int64(index)))
        }
        readings += [
            Reading(topic: "sensors/c/temperature", payload: "35", timestamp: 10),
            Reading(topic: "sensors/a/temperature", payload: "55", timestamp: 11),
            Reading(topic: "sensors/d/temperature", payload: "45", timestamp: 12),
        ]
        let outcome = Replay.run(rules, readings: readings)
        #expect(
            outcome.transitions.map { "\($0.ruleID) \($0.transition)@\($0.timestamp) \($0.labels)" } == [
                "per-device fire@10 [device=c]",
                "per-device fire@11 [device=a]",
                "any-device fire@11 []",
                "per-device-too fire@11 [device=a]",
                "per-device fire@12 [device=d]",
            ]
        )
    }

    @Test(arguments: ["a+b", "a#", "a/b", "x\u{1}y", String(repeating: "z", count: 65), "süd"])
    func unsafeCapturedValuesNeverReachATopic(level: String) throws {
        let rules = try loadRules(ruleFile("above: 30", topic: "sensors/{device}/#"))
        let outcome = Replay.run(rules, readings: [Reading(topic: "sensors/\(level)/t", payload: "99", timestamp: 0)])
        if level == "a/b" {
            // "a" is the captured level here; it is safe.
            #expect(outcome.actions.count == 1)
        } else {
            #expect(outcome.actions.isEmpty)
            #expect(outcome.unusable["unsafe_capture"] == 1)
        }
    }

    @Test func actionPayloadCarriesRuleReasonValueAndTime() throws {
        let text = """
            rules:
              - id: hot
                topic: sensors/{room}/temperature
                above: 30
                on_fire:
                  - publish:
                      topic: "alerts/{room}"
                      payload: {state: "on", note: "room {room} at {value} (>{threshold})", level: "{value}", rule: "custom"}
                  - log: "hot {room}"
                  - command: [notify-send, "{room}", "{value}"]
            """
        let rules = try loadRules(text)
        let outcome = Replay.run(
            rules,
            readings: [
                Reading(topic: "sensors/lab\"1/temperature", payload: "1", timestamp: 0),
                Reading(topic: "sensors/lab-1/temperature", payload: "{\"value\": 31.5}", timestamp: 5),
            ]
        )
        #expect(outcome.actions.count == 3)
        #expect(
            Replay.jsonLine(outcome.actions[0])
                == #"{"ts":5,"rule":"hot","transition":"fire","topic":"alerts/lab-1","payload":{"state":"on","note":"room lab-1 at 31.5 (>30)","level":31.5,"rule":"custom","reason":"value 31.5 above 30","value":31.5,"ts":5}}"#
        )
        #expect(outcome.actions[1].action == .log(message: "hot lab-1"))
        #expect(
            outcome.actions[2].action
                == .command(arguments: ["notify-send", "lab-1", "31.5"], timeoutMilliseconds: 10_000)
        )
    }

    @Test func payloadStringsAreJSONEscaped() throws {
        let text = """
            rules:
              - id: door
                topic: sensors/{door}/state
                equals: "open \\"wide\\""
                on_fire:
                  - publish: {topic: "alerts/{door}", payload: {text: "{value} at {door}"}}
            """
        let rules = try loadRules(text)
        let outcome = Replay.run(
            rules,
            readings: [Reading(topic: "sensors/d1/state", payload: "\"open \\\"wide\\\"\"", timestamp: 0)]
        )
        #expect(outcome.actions.count == 1)
        #expect(Replay.jsonLine(outcome.actions[0]).contains(#""text":"open \"wide\" at d1""#))
    }

    @Test func systemTopicsAreNotMatchedByLeadingWildcards() throws {
        let rules = try loadRules(ruleFile("above: 1", topic: "+/{device}/temperature"))
        let outcome = Replay.run(rules, readings: [Reading(topic: "$SYS/d/temperature", payload: "5", timestamp: 0)])
        #expect(outcome.transitions.isEmpty)
    }

    @Test func transitionLimitIsReported() throws {
        let rules = try loadRules(ruleFile("above: 30\nmax_transitions: 2 per 1m"))
        var evaluator = Evaluator(ruleSet: rules)
        var events: [EvaluationEvent] = []
        for (time, value) in [(0, "31"), (1000, "20"), (2000, "31")] as [(Int64, String)] {
            evaluator.process(Reading(topic: "sensors/d1/temperature", payload: value, timestamp: time), into: &events)
        }
        #expect(
            events.contains(
                .transitionsLimited(
                    ruleID: "r",
                    labels: [Label(name: "device", value: "d1")],
                    timestamp: 2000,
                    until: 60_000
                )
            )
        )
        #expect(evaluator.nextDeadline == 60_000)
    }

    /// A transition the rule wants but a wear or safety limit holds back is said once, when the hold starts,
    /// naming the setting and until when; more readings during the hold say nothing more.
    @Test(
        arguments: [
            ("min_off: 1m", "fire", 2000, "min_off", 61_000),
            ("max_transitions: 2 per 1m", "fire", 2000, "max_transitions", 60_000),
            ("min_on: 1m", "clear", 1000, "min_on", 60_000),
            ("cooldown: 30s", "clear", 1000, "cooldown", 30_000),
            ("min_off: 10s\ncooldown: 30s", "clear", 1000, "cooldown", 30_000),
        ] as [(String, String, Int64, String, Int64)]
    )
    func aHeldTransitionIsSaidOnce(keys: String, kind: String, time: Int64, heldBy: String, until: Int64) throws {
        let outcome = Replay.run(
            try loadRules(ruleFile("above: 30\n" + keys)),
            readings: [(0, "31"), (1000, "20"), (1500, "19"), (2000, "31"), (3000, "35"), (4000, "36")].map {
                Reading(topic: "sensors/d1/temperature", payload: $1, timestamp: $0)
            }
        )
        #expect(
            outcome.held == [
                .transitionHeld(
                    ruleID: "r",
                    labels: [Label(name: "device", value: "d1")],
                    timestamp: time,
                    transition: TransitionKind(rawValue: kind)!,
                    heldBy: heldBy,
                    until: until
                )
            ]
        )
        let audit = AuditLine.lines(for: outcome.held, in: try loadRules(ruleFile("above: 30\n" + keys)))
        #expect(
            audit.first?.hasPrefix(
                #"{"ts":\#(time),"event":"held","rule":"r","transition":"\#(kind)","source":"rules.yaml:2""#
            ) == true,
            "\(audit)"
        )
        #expect(audit.first?.hasSuffix(#""labels":{"device":"d1"},"held_by":"\#(heldBy)","until":\#(until)}"#) == true)
    }
}
