import FileFormats
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

    /// After a restart the last reading's time is the reading's, not the restart's (audit `reading.ts`,
    /// `/api/instances` `last_reading_at`); `stale` still counts from the restart.
    @Test func aRestoredInstanceKeepsItsLastReadingTime() throws {
        let rules = ruleFile("above: 30\nfor: 10s\nstale: 1m")
        var first = Evaluator(ruleSet: try loadRules(rules))
        first.tracksChanges = true
        _ = process(&first, "31", at: 1000)
        let saved = first.takeChangedInstances()

        var second = Evaluator(ruleSet: try loadRules(rules))
        #expect(second.restore(saved, now: 5000) == 1)
        #expect(second.instanceReports().first?.lastReadingAt == 1000)
        let fired = advance(&second, to: 11_000).compactMap { event -> TransitionRecord? in
            if case .transition(let record) = event { record } else { nil }
        }
        #expect(fired.map(\.timestamp) == [11_000])
        #expect(fired.first?.readingTimestamp == 1000)
        // Stale counts from the restart (5 s), not from the reading (1 s): no stale before 65 s.
        #expect(second.nextDeadline == 65_000)
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

    /// A comment line above a rule moves it and its actions down a line: that is no change of the rule.
    @Test func reloadKeepsStateWhenOnlySourcePositionsMoved() throws {
        let rules = ruleFile("above: 30\nfor: 10s\ncooldown: 1m")
        var evaluator = Evaluator(ruleSet: try loadRules(rules))
        _ = process(&evaluator, "35", at: 0)
        let moved = try loadRules("# a comment\n\n" + rules)
        #expect(moved.rules[0].onFire[0].location != evaluator.ruleSet.rules[0].onFire[0].location)
        evaluator.replaceRules(with: moved)
        let events = advance(&evaluator, to: 10_000)
        let fired = events.compactMap { if case .transition(let record) = $0 { record.ruleID } else { nil } }
        #expect(fired == ["r"])
        #expect(evaluator.ruleSet.rules[0].location.line == 4)
    }
}

@Suite("Evaluator memory")
struct EvaluatorMemoryTests {
    /// 100,000 instances are a normal deployment (10,000 sensors × 10 rules): an instance stays small.
    @Test func anInstanceStaysSmall() {
        #expect(MemoryLayout<Evaluator.Instance>.stride <= 72)
    }
}

extension EvaluatorStateTests {
    struct HeldCase: Sendable, CustomTestStringConvertible {
        var name: String
        var keys: String
        var readings: [(Int64, String)]
        var heldBy: String?
        var heldUntil: Int64?
        var testDescription: String { name }
    }

    /// An instance that stays in its state against its condition says what holds it and until when.
    @Test(arguments: [
        HeldCase(
            name: "min_on",
            keys: "above: 30\nclear: 28\nmin_on: 15s",
            readings: [(0, "31"), (1000, "20")],
            heldBy: "min_on",
            heldUntil: 15000
        ),
        HeldCase(
            name: "cooldown",
            keys: "above: 30\ncooldown: 10s",
            readings: [(0, "31"), (2000, "20")],
            heldBy: "cooldown",
            heldUntil: 10000
        ),
        HeldCase(
            name: "min_off",
            keys: "above: 30\nmin_off: 1m",
            readings: [(0, "31"), (1000, "20"), (2000, "35")],
            heldBy: "min_off",
            heldUntil: 61000
        ),
        HeldCase(
            name: "keep_firing_for",
            keys: "above: 30\nkeep_firing_for: 1m",
            readings: [(0, "31"), (5000, "20")],
            heldBy: "keep_firing_for",
            heldUntil: 65000
        ),
        HeldCase(
            name: "nothing holds it",
            keys: "above: 30\nmin_on: 15s",
            readings: [(0, "31"), (1000, "32")],
            heldBy: nil,
            heldUntil: nil
        ),
    ])
    func anInstanceSaysWhatHoldsIt(_ held: HeldCase) throws {
        var evaluator = Evaluator(ruleSet: try loadRules(ruleFile(held.keys)))
        for (time, value) in held.readings { _ = process(&evaluator, value, at: time) }
        let report = try #require(evaluator.instanceReports().first)
        #expect(report.held?.by == held.heldBy)
        #expect(report.held?.until == held.heldUntil)
        if let by = held.heldBy { #expect(report.json["held_by"] == .string(by)) }
    }
}
