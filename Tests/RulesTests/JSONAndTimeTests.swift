import FileFormats
import Foundation
import Rules
import Testing

@Suite("JSON, timestamps and recorded readings")
struct JSONAndTimeTests {
    @Test(arguments: [
        (
            "{\"a\": [1, 2.5, -3e2, true, null, \"x\\n\\u00e9\\ud83d\\ude00\"]}",
            #"{"a":[1,2.5,-300,true,null,"x\n😀"]}"#.replacingOccurrences(of: "😀", with: "é😀")
        ),
        ("  42 ", "42"),
        ("\"q\\\"\"", #""q\"""#),
        ("{}", "{}"),
    ])
    func parsesAndPrints(input: String, output: String) throws {
        let value = try #require(JSONValue(parsing: input))
        #expect(value.jsonText == output)
    }

    /// Escaping around characters that combine with what precedes them (a quote and U+0301 are one
    /// Character, so are CR LF), control characters, DEL, and a string with nothing to escape.
    @Test(arguments: [
        ("\"\u{301}x", #""\"\#u{301}x""#),
        ("a\r\nb\u{1}\u{7F}\\", #""a\r\nb\u0001\u007f\\""#),
        ("plain é 😀", #""plain é 😀""#),
    ])
    func escapesStrings(string: String, expected: String) throws {
        #expect(JSONValue.string(string).jsonText == expected)
        #expect(JSONValue.string(string).jsonBytes == Array(expected.utf8))
        #expect(JSONValue(parsing: expected) == .string(string))
    }

    @Test(arguments: [
        "", "{", "[1,]", "01", "1.", "NaN", "Infinity", "\"\u{1}\"", "{\"a\" 1}", "tru", "1 2",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    ])
    func rejectsInvalidJSON(input: String) {
        #expect(JSONValue(parsing: input) == nil)
    }

    @Test(
        arguments: [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-11-29T10:00:00.250Z", 1_795_946_400_250),
            ("2026-11-29T11:00:00.25+01:00", 1_795_946_400_250),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
        ] as [(String, Int64)]
    )
    func rfc3339(text: String, milliseconds: Int64) {
        #expect(Timestamp.parseRFC3339(text) == milliseconds)
    }

    @Test func readingsFileReportsEveryBadLine() {
        let text = """
            {"ts": 1000, "topic": "sensors/a/temperature", "payload": {"value": 1}}
            # a comment
            {"ts": "yesterday", "topic": "x", "payload": 1}
            not json
            {"ts": 5, "payload": 1}
            """
        #expect {
            try RecordedReadings.parse(text, path: "r.jsonl")
        } throws: { error in
            (error as? RecordedReadingsError)?.lines.map(\.line) == [3, 4, 5]
        }
    }

    /// Times outside years 1–9999 are errors with the line, not a trap (1e19 used to die with SIGILL).
    @Test(arguments: [
        #"{"ts": 1e19, "topic": "t", "payload": 1}"#,
        #"{"ts": -9223372036854775808, "topic": "t", "payload": 1}"#,
        #"{"ts": 9223372036854775807, "topic": "t", "payload": 1}"#,
        #"{"ts": 253402300800000, "topic": "t", "payload": 1}"#,
        #"{"ts": "0000-01-01T00:00:00Z", "topic": "t", "payload": 1}"#,
    ])
    func readingsFileRejectsTimesOutOfRange(line: String) {
        #expect {
            try RecordedReadings.parse(line, path: "r.jsonl")
        } throws: { error in
            (error as? RecordedReadingsError)?.description.hasPrefix("r.jsonl:1:1: error: \"ts\"") == true
        }
    }

    /// The evaluator takes every time a readings file may hold, with the longest durations, without trapping.
    @Test(arguments: [Timestamp.validRange.lowerBound, Timestamp.validRange.upperBound, 0])
    func evaluatorTakesExtremeTimes(time: Int64) throws {
        let ruleSet = try loadRules(ruleFile("above: 30\nfor: 36524d\nstale: 36524d\ncooldown: 36524d\nmin_on: 36524d"))
        var evaluator = Evaluator(ruleSet: ruleSet)
        var events: [EvaluationEvent] = []
        evaluator.process(Reading(topic: "sensors/d1/temperature", payload: "31", timestamp: time), into: &events)
        evaluator.advance(to: time + RuleDuration.maximumMilliseconds, into: &events)
        #expect(evaluator.instanceCount == 1)
    }

    @Test func aStringPayloadIsTheRawText() throws {
        let readings = try RecordedReadings.parse(#"{"ts": 1, "topic": "d", "payload": "open"}"#, path: "r")
        #expect(readings.first?.payload == Array("open".utf8))
    }
}
