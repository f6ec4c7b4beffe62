import Foundation
import Testing

/// `check`, `replay` and `diff` of rules over several sensors, through the real `rules-engine`.
@Suite("rules-engine offline commands, combined rules")
struct CombinedRuleCommandTests {
    let commands = RulesEngineCommandTests()

    static let vent = """
        rules:
          - id: vent
            all:
              - {topic: "sensors/{room}/humidity", above: 80, clear: 75}
              - {topic: "weather/outdoor/temperature", below: 30}
            on_fire:
              - publish: {topic: "actuators/{room}/vent/set", payload: {state: "on"}}
        """

    @Test func checkNotesASharedLeafAndRejectsACartesianJoin() throws {
        let valid = try commands.temporaryDirectory(["vent.yaml": Self.vent])
        let run = try commands.rulesEngine(["check", valid])
        #expect(run.status == 0, "\(run.standardError)")
        #expect(
            run.standardError.split(separator: "\n").map(String.init) == [
                "\(valid)/vent.yaml:5:9: note: rule 'vent': 'weather/outdoor/temperature' captures fewer names than "
                    + "the rule ({room}): every reading on it re-evaluates every instance of the rule",
                "1 rule(s) valid",
            ]
        )
        let join = try commands.temporaryDirectory([
            "join.yaml": Self.vent.replacingOccurrences(of: "weather/outdoor/temperature", with: "sensors/{zone}/t")
        ])
        let rejected = try commands.rulesEngine(["check", join])
        #expect(rejected.status == 1)
        #expect(
            rejected.standardError.hasPrefix(
                "\(join)/join.yaml:2:5: error: rule 'vent': no condition captures every name"
            )
        )
    }

    @Test func replayAndDiffFollowBothSensors() throws {
        let directory = try commands.temporaryDirectory([
            "new/vent.yaml": Self.vent,
            "old/vent.yaml": Self.vent.replacingOccurrences(of: "below: 30", with: "below: 20"),
            "readings.jsonl": """
            {"ts": 1000, "topic": "sensors/r1/humidity", "payload": 85}
            {"ts": 2000, "topic": "weather/outdoor/temperature", "payload": {"value": 25}}
            """,
        ])
        let replay = try commands.rulesEngine(["replay", "--rules", directory + "/new", directory + "/readings.jsonl"])
        #expect(replay.status == 0, "\(replay.standardError)")
        #expect(
            replay.standardOutput.contains(
                #""ts":2000,"rule":"vent","transition":"fire","topic":"actuators/r1/vent/set""#
            )
        )
        let diff = try commands.rulesEngine([
            "diff", "--old", directory + "/old", "--new", directory + "/new", directory + "/readings.jsonl",
        ])
        #expect(diff.status == 1)
        #expect(diff.standardOutput.hasPrefix("+ "), "\(diff.standardOutput)")
    }
}
