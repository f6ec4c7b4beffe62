import Testing

@testable import Rules

@Suite("Evaluator state across reloads and restarts")
struct EvaluatorStateTests {
    static let rules = ruleFile("above: 30\nfor: 10s")

    func process(_ evaluator: inout Evaluator, _ value: String, at time: Int64) -> [EvaluationEvent] {
        var events: [EvaluationEvent] = []
        evaluator.process(Reading(topic: "sensors/d1/temperature", payload: value, timestamp: time), into: &events)
        return events
    }

    func advance(_ evaluator: inout Evaluator, to time: Int64) -> [EvaluationEvent] {
        var events: [EvaluationEvent] = []
        evaluator.advance(to: time, into: &events)
        return events
    }

    @Test func aRestoredPendingInstanceFiresOnItsOriginalSchedule() throws {
        var first = Evaluator(ruleSet: try loadRules(Self.rules))
        first.tracksChanges = true
        _ = process(&first, "31", at: 0)
        let saved = first.takeChangedInstances()
        #expect(saved.map(\.phase) == [.pending])

        var second = Evaluator(ruleSet: try loadRules(Self.rules))
        #expect(second.restore(saved, now: 4000) == 1)
        #expect(second.nextDeadline == 10_000)
        let events = advance(&second, to: 10_000)
        #expect(events.contains { if case .transition(let record) = $0 { record.timestamp == 10_000 } else { false } })
    }

    @Test func aRestoredFiringInstanceDoesNotFireAgain() throws {
        var first = Evaluator(ruleSet: try loadRules(Self.rules))
        first.tracksChanges = true
        _ = process(&first, "31", at: 0)
        _ = advance(&first, to: 10_000)
        let saved = first.takeChangedInstances()
        #expect(saved.last?.phase == .firing)

        var second = Evaluator(ruleSet: try loadRules(Self.rules))
        second.restore(saved, now: 20_000)
        #expect(process(&second, "35", at: 21_000).isEmpty)
        let cleared = process(&second, "20", at: 22_000)
        #expect(
            cleared.contains { if case .transition(let record) = $0 { record.transition == .clear } else { false } }
        )
    }

    @Test func aSnapshotFromAnEarlierVersionWithTheWholeFingerprintRestores() throws {
        let ruleSet = try loadRules(Self.rules)
        var first = Evaluator(ruleSet: ruleSet)
        first.tracksChanges = true
        _ = process(&first, "31", at: 0)
        var saved = first.takeChangedInstances()
        #expect(saved.map(\.definition) == [ruleSet.rules[0].definitionHash])
        saved[0].definition = ruleSet.rules[0].definitionFingerprint
        var second = Evaluator(ruleSet: ruleSet)
        #expect(second.restore(saved, now: 4000) == 1)
    }

    @Test func aChangedRuleDoesNotRestore() throws {
        var first = Evaluator(ruleSet: try loadRules(Self.rules))
        first.tracksChanges = true
        _ = process(&first, "31", at: 0)
        let saved = first.takeChangedInstances()
        var second = Evaluator(ruleSet: try loadRules(ruleFile("above: 31\nfor: 10s")))
        #expect(second.restore(saved, now: 1000) == 0)
    }

    @Test func reloadKeepsTheStateOfUnchangedRulesOnly() throws {
        let two = { (threshold: Int) in
            """
            rules:
              - {id: kept, topic: "sensors/{d}/temperature", above: 30, for: 10s}
              - {id: edited, topic: "sensors/{d}/temperature", above: \(threshold), for: 10s}
            """
        }
        var evaluator = Evaluator(ruleSet: try loadRules(two(30)))
        _ = process(&evaluator, "35", at: 0)
        evaluator.replaceRules(with: try loadRules(two(32)))
        let events = advance(&evaluator, to: 10_000)
        let fired = events.compactMap { if case .transition(let record) = $0 { record.ruleID } else { nil } }
        // "kept" keeps its pending timer; "edited" starts over and needs a new reading.
        #expect(fired == ["kept"])
    }
}

@Suite("Evaluator memory")
struct EvaluatorMemoryTests {
    /// 100,000 instances are a normal deployment (10,000 sensors × 10 rules): an instance stays small.
    @Test func anInstanceStaysSmall() {
        #expect(MemoryLayout<Evaluator.Instance>.stride <= 112)
    }
}
