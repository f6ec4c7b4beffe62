import PropertyBased
import Rules
import Testing

@Suite("Rule invariants")
struct PropertyTests {
    static let hysteresisRule = """
        rules:
          - id: r
            topic: sensors/{device}/temperature
            above: 30
            clear: 28
            for: 2s
            cooldown: 5s
            on_fire:
              - publish: {topic: "actuators/{device}/cooling/set", payload: {state: "on"}}
            on_clear:
              - publish: {topic: "actuators/{device}/cooling/set", payload: {state: "off"}}
        """

    static func readings(_ values: [Double], gaps: [Int], devices: Int = 2) -> [Reading] {
        var time: Int64 = 0
        return values.enumerated().map { index, value in
            time += Int64(gaps[index % gaps.count])
            let payload = index % 17 == 16 ? "garbage" : "{\"value\": \(value)}"
            return Reading(topic: "sensors/d\(index % devices)/temperature", payload: payload, timestamp: time)
        }
    }

    @Test func neverTwoFiresWithoutAClearAndCooldownRespected() async throws {
        let rules = try loadRules(Self.hysteresisRule)
        await propertyCheck(
            count: 300,
            input: Gen.double(in: 20...40).array(of: 1...80),
            Gen.int(in: 1...4000).array(of: 1...10)
        ) { values, gaps in
            let outcome = Replay.run(rules, readings: Self.readings(values, gaps: gaps), end: 1_000_000)
            var last: [String: (TransitionKind, Int64)] = [:]
            for record in outcome.transitions {
                let key = record.labels.description
                if let (kind, time) = last[key] {
                    #expect(kind != record.transition, "two \(kind) in a row for \(key)")
                    #expect(record.timestamp - time >= 5000, "cooldown broken for \(key)")
                } else {
                    #expect(record.transition == .fire, "an instance cannot clear before it fired")
                }
                last[key] = (record.transition, record.timestamp)
            }
        }
    }

    @Test func aValueInsideTheHysteresisBandNeverFlaps() async throws {
        let rules = try loadRules(Self.hysteresisRule)
        await propertyCheck(
            count: 300,
            input: Gen.double(in: 28.001...30).array(of: 1...80),
            Gen.int(in: 1...4000).array(of: 1...10)
        ) { band, gaps in
            // Fire first (value 35 for long enough), then oscillate inside (clear, threshold].
            var readings = [
                Reading(topic: "sensors/d0/temperature", payload: "35", timestamp: 0),
                Reading(topic: "sensors/d0/temperature", payload: "35", timestamp: 3000),
            ]
            var time: Int64 = 3000
            for (index, value) in band.enumerated() {
                time += Int64(gaps[index % gaps.count])
                readings.append(Reading(topic: "sensors/d0/temperature", payload: "\(value)", timestamp: time))
            }
            let outcome = Replay.run(rules, readings: readings, end: time + 60_000)
            #expect(outcome.transitions.map(\.transition) == [.fire])
        }
    }

    @Test func replayIsDeterministic() async throws {
        let rules = try loadRules(Self.hysteresisRule)
        await propertyCheck(
            count: 100,
            input: Gen.double(in: 20...40).array(of: 1...100),
            Gen.int(in: 1...5000).array(of: 1...10)
        ) { values, gaps in
            let readings = Self.readings(values, gaps: gaps, devices: 3)
            let first = Replay.run(rules, readings: readings).actions.map(Replay.jsonLine)
            let second = Replay.run(rules, readings: readings).actions.map(Replay.jsonLine)
            #expect(first == second)
        }
    }

    @Test func theTopicIndexAgreesWithMatchingEveryPattern() async throws {
        let levels = ["a", "b", "c", "+", "#", "{x}"]
        await propertyCheck(
            count: 300,
            input: Gen.element(of: levels).array(of: 1...4).array(of: 1...12),
            Gen.element(of: ["a", "b", "c", "", "$SYS"]).array(of: 1...5)
        ) { patterns, topicLevels in
            var texts: [String] = []
            for (index, pattern) in patterns.enumerated() {
                var parts = pattern.compactMap { $0 }
                if let hash = parts.firstIndex(of: "#") { parts = Array(parts[...hash]) }
                var seen = 0
                parts = parts.map { part in
                    guard part == "{x}" else { return part }
                    seen += 1
                    return "{x\(seen)}"
                }
                texts.append("  - {id: r\(index), topic: \"\(parts.joined(separator: "/"))\", above: 0}")
            }
            guard let rules = try? loadRules("rules:\n" + texts.joined(separator: "\n")) else { return }
            let topic = topicLevels.compactMap { $0 }.joined(separator: "/")
            let outcome = Replay.run(rules, readings: [Reading(topic: topic, payload: "1", timestamp: 0)])
            let fired = Set(outcome.transitions.map(\.ruleID))
            let expected = Set(
                rules.rules.filter { rule in
                    // A match whose captured level is not a safe value (an empty level) is rejected instead.
                    let captured = rule.topic.captures(
                        in: topic.split(separator: "/", omittingEmptySubsequences: false)
                    )
                    return captured?.allSatisfy(TopicPattern.isSafeCaptureValue) ?? false
                }.map(\.id)
            )
            #expect(fired == expected, "topic \(topic)")
        }
    }
}
