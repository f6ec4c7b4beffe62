import Rules
import Testing

/// What a takeover relies on (docs/scale-out.md): an evaluator restored from a snapshot taken between two
/// messages decides exactly what the uninterrupted one decides from there on, transition for transition and
/// millisecond for millisecond. Messages: a reading every 2 s alternating between 20 and 35 every 4 readings,
/// and a clock tick every 500 ms, as the partitioned engine sees them.
@Suite("Snapshot and restore mid-stream")
struct SnapshotRestoreTests {
    static let rules = [
        "above: 30\nclear: 28",
        "above: 30\nclear: 28\nfor: 3s",
        "avg: 10s\nabove: 27\nclear: 26",
        "avg: 5\nabove: 27\nclear: 26",
        "max: 6s\nabove: 30\nclear: 28",
        "rate: {per: 1m, over: 10s}\nabove: 30",
        "above: 30\nclear: 28\nstale: 3s",
        "above: 30\nclear: 28\nmax_transitions: 2 per 30s",
    ]

    enum Message {
        case reading(Int64, String)
        case tick(Int64)
    }

    static var messages: [Message] {
        var result: [Message] = []
        for index in 0..<40 {
            let time = Int64(index) * 2_000
            // A silent stretch, so that `stale` and the windows' clocks have something to do.
            if !(24..<28).contains(index) {
                result.append(.reading(time, "{\"value\": \((index / 4) % 2 == 0 ? 20 : 35), \"seq\": \(index + 1)}"))
            }
            for tick in 1...3 { result.append(.tick(time + Int64(tick) * 500)) }
        }
        return result
    }

    static func apply(_ message: Message, to evaluator: inout Evaluator) -> [String] {
        var events: [EvaluationEvent] = []
        switch message {
        case .reading(let time, let payload):
            evaluator.process(
                Reading(topic: "sensors/d1/temperature", payload: payload, timestamp: time),
                into: &events
            )
        case .tick(let time):
            evaluator.advance(to: time, into: &events)
        }
        return events.compactMap { event in
            guard case .transition(let record) = event else { return nil }
            return "\(record.transition.rawValue)@\(record.timestamp)"
        }
    }

    @Test(arguments: rules)
    func aRestoredEvaluatorDecidesAsTheUninterruptedOne(_ keys: String) throws {
        let ruleSet = try loadRules(ruleFile(keys))
        let messages = Self.messages
        var uninterrupted = Evaluator(ruleSet: ruleSet)
        let reference = messages.map { Self.apply($0, to: &uninterrupted) }
        #expect(reference.joined().count > 0, "the stream makes the rule transition")
        for split in stride(from: 1, to: messages.count - 1, by: 3) {
            var before = Evaluator(ruleSet: ruleSet)
            for message in messages[..<split] { _ = Self.apply(message, to: &before) }
            var restored = Evaluator(ruleSet: ruleSet)
            restored.restoreSequences(before.lastSequences)
            _ = restored.restore(before.snapshotAll(), now: before.now)
            let after = messages[split...].map { Self.apply($0, to: &restored) }
            #expect(
                after.flatMap { $0 } == reference[split...].flatMap { $0 },
                "restored after message \(split) of \(messages.count)"
            )
        }
    }
}
