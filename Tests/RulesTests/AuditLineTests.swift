import FileFormats
import Rules
import Testing

/// The audit trail's lines, exactly (scripts parse them).
@Suite("Audit lines")
struct AuditLineTests {
    static let rules = """
        rules:
          - id: cooling
            topic: "sensors/{rack}/temperature"
            above: 30
            for: 10s
            on_fire:
              - publish: {topic: "actuators/{rack}/cooling/set", payload: {state: "on", value: "{value}"}}
              - log: "{rack} is hot"
        """

    @Test func aTransitionAndItsCommands() throws {
        let ruleSet = try RuleLoader.load([RuleSource(path: "rules/server.yaml", text: Self.rules)])
        let outcome = Replay.run(
            ruleSet,
            readings: [Reading(topic: "sensors/r1/temperature", payload: #"{"value": 30.5}"#, timestamp: 1000)],
            end: 20_000
        )
        let hash = ruleSet.definitionHashes[0]
        let transition = try #require(outcome.transitions.first)
        #expect(
            AuditLine.line(for: transition, in: ruleSet)
                == #"{"ts":11000,"event":"transition","rule":"cooling","transition":"fire","source":"rules/server.yaml:2","definition":"\#(hash)","labels":{"rack":"r1"},"reason":"value 30.5 above 30 for 10s","severity":"warning","reading":{"ts":1000,"value":30.5}}"#
        )
        #expect(outcome.actions.count == 2)
        #expect(
            AuditLine.line(for: outcome.actions[0], in: ruleSet)
                == #"{"ts":11000,"event":"command","rule":"cooling","transition":"fire","source":"rules/server.yaml:2","definition":"\#(hash)","labels":{"rack":"r1"},"reason":"value 30.5 above 30 for 10s","topic":"actuators/r1/cooling/set","payload":{"state":"on","value":30.5,"rule":"cooling","reason":"value 30.5 above 30 for 10s","ts":11000}}"#
        )
        #expect(
            AuditLine.line(for: outcome.actions[1], in: ruleSet)
                == #"{"ts":11000,"event":"command","rule":"cooling","transition":"fire","source":"rules/server.yaml:2","definition":"\#(hash)","labels":{"rack":"r1"},"reason":"value 30.5 above 30 for 10s","log":"r1 is hot"}"#
        )
    }

    /// A `stale` fire has no reading that decided it.
    @Test func aStaleFireHasNoReading() throws {
        let ruleSet = try RuleLoader.load([
            RuleSource(path: "r.yaml", text: "rules:\n  - {id: s, topic: \"t/{d}\", above: 30, stale: 1m}\n")
        ])
        let outcome = Replay.run(ruleSet, readings: [Reading(topic: "t/a", payload: "20", timestamp: 0)], end: 60_000)
        let line = AuditLine.line(for: try #require(outcome.transitions.first), in: ruleSet)
        #expect(
            line.hasSuffix(#""reason":"no reading for 1m (stale)","severity":"warning","reading":null}"#),
            "\(line)"
        )
    }
}
