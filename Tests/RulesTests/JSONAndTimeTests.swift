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

    /// Any number of fraction digits from 0 to 9 (`mosquitto_sub -F %J` writes six), cut to the millisecond,
    /// with `Z` or a `±HH:MM` offset. More than three digits used to trap ("Range requires lowerBound <=
    /// upperBound") in `rules-engine replay` and `sensor-sim replay`.
    @Test(
        arguments: [
            ("2026-12-07T23:15:58Z", 1_796_685_358_000),
            ("2026-12-07T23:15:58.3Z", 1_796_685_358_300),
            ("2026-12-07T23:15:58.37Z", 1_796_685_358_370),
            ("2026-12-07T23:15:58.379Z", 1_796_685_358_379),
            ("2026-12-07T23:15:58.3791Z", 1_796_685_358_379),
            ("2026-12-07T23:15:58.37911Z", 1_796_685_358_379),
            ("2026-12-07T23:15:58.379117Z", 1_796_685_358_379),
            ("2026-12-07T23:15:58.3791179Z", 1_796_685_358_379),
            ("2026-12-07T23:15:58.37911799Z", 1_796_685_358_379),
            ("2026-12-07T23:15:58.999999999Z", 1_796_685_358_999),
            ("2026-12-08T00:15:58.123456789+01:00", 1_796_685_358_123),
            ("2026-12-07T17:45:58.000001-05:30", 1_796_685_358_000),
            ("1969-12-31T23:59:59.9999Z", -1),
        ] as [(String, Int64)]
    )
    func rfc3339TakesZeroToNineFractionDigits(text: String, milliseconds: Int64) {
        #expect(Timestamp.parseRFC3339(text) == milliseconds)
    }

    @Test(arguments: [
        "2026-12-07T23:15:58.Z", "2026-12-07T23:15:58.1234567891Z", "2026-12-07T23:15:58.123",
        "2026-12-07T23:15:58.123+0100", "2026-12-07T23:15:58.123+01", "2026-12-07T23:15:58.12a4Z",
        "2026-12-07T23:15:58.123Z ", "2026-12-07", "2026-13-07T23:15:58Z",
    ])
    func rfc3339RejectsWhatIsNotOne(text: String) {
        #expect(Timestamp.parseRFC3339(text) == nil)
    }

    /// The line `mosquitto_sub -F %J` writes for a reading, in a readings file.
    @Test func readingsFileTakesMicrosecondTimes() throws {
        let line = #"{"ts": "2026-12-07T23:15:58.379117Z", "topic": "sensors/a/temperature", "payload": {"value": 1}}"#
        let readings = try RecordedReadings.parse(
            line + "\n" + line.replacingOccurrences(of: "117Z", with: "117+00:00"),
            path: "r"
        )
        #expect(readings.map(\.timestamp) == [1_796_685_358_379, 1_796_685_358_379])
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
