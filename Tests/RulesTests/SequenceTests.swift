import Rules
import Testing

@Suite("Loss accounting by seq")
struct SequenceTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var readings: [(topic: String, seq: Int?, value: Double)]
        var transitions: [String]
        var missing: Int64
        var duplicates: Int
        var testDescription: String { name }
    }

    static let topic = "sensors/d1/temperature"

    @Test(arguments: [
        Case(
            name: "in order",
            readings: [(topic, 1, 31), (topic, 2, 20), (topic, 3, 31)],
            transitions: ["fire@0", "clear@1", "fire@2"],
            missing: 0,
            duplicates: 0
        ),
        Case(
            name: "a duplicate is dropped before evaluation",
            readings: [(topic, 1, 31), (topic, 1, 20)],
            transitions: ["fire@0"],
            missing: 0,
            duplicates: 1
        ),
        Case(
            name: "an older seq is a duplicate too",
            readings: [(topic, 7, 31), (topic, 8, 31), (topic, 7, 20)],
            transitions: ["fire@0"],
            missing: 0,
            duplicates: 1
        ),
        Case(
            name: "a gap is counted, the reading still evaluated",
            readings: [(topic, 1, 31), (topic, 2, 31), (topic, 5, 20)],
            transitions: ["fire@0", "clear@2"],
            missing: 2,
            duplicates: 0
        ),
        Case(
            name: "a sensor restart starts counting over",
            readings: [(topic, 500, 31), (topic, 501, 31), (topic, 1, 20), (topic, 2, 20)],
            transitions: ["fire@0", "clear@2"],
            missing: 0,
            duplicates: 0
        ),
        Case(
            name: "readings without seq are not counted",
            readings: [(topic, nil, 31), (topic, nil, 31), (topic, nil, 20)],
            transitions: ["fire@0", "clear@2"],
            missing: 0,
            duplicates: 0
        ),
        Case(
            name: "each topic counts on its own",
            readings: [(topic, 1, 31), ("sensors/d2/temperature", 1, 31)],
            transitions: ["fire@0", "fire@1"],
            missing: 0,
            duplicates: 0
        ),
    ])
    func accounting(_ example: Case) throws {
        let rules = try loadRules(ruleFile("above: 30"))
        let readings = example.readings.enumerated().map { index, reading in
            let seq = reading.seq.map { #", "seq": \#($0)"# } ?? ""
            return Reading(
                topic: reading.topic,
                payload: #"{"value": \#(reading.value)\#(seq)}"#,
                timestamp: Int64(index)
            )
        }
        let outcome = Replay.run(rules, readings: readings)
        #expect(outcome.transitions.map { "\($0.transition.rawValue)@\($0.timestamp)" } == example.transitions)
        #expect(outcome.missing == example.missing)
        #expect(outcome.duplicates == example.duplicates)
    }
}
