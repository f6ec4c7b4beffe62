import FileFormats
import Testing

@testable import Rules
@testable import RulesEngineDaemon

@Suite("Transition announcements")
struct TransitionAnnouncementTests {
    /// The announcement is one JSON object a client parses back to what happened, whatever the labels and the
    /// reason hold (quotes, backslashes, control characters, non-ASCII text).
    @Test(
        arguments: [
            ("plain", [Label(name: "room", value: "lab")], JSONValue.number(31.5), "value 31.5 above 30"),
            ("escaped", [Label(name: "ro\"om", value: "l\\ab\n")], .string("open"), "state \"open\"\tfor 2s — süd"),
            ("none", [], nil, ""),
        ] as [(String, [Label], JSONValue?, String)]
    )
    func anAnnouncementParsesBackToTheTransition(
        name: String,
        labels: [Label],
        value: JSONValue?,
        reason: String
    )
        throws
    {
        let record = TransitionRecord(
            timestamp: 1_795_946_400_250,
            ruleID: "hot-\(name)",
            transition: .fire,
            labels: labels,
            severity: .warning,
            reason: reason,
            value: value
        )
        let parsed = try #require(JSONValue(parsing: String(decoding: record.announcementBytes, as: UTF8.self)))
        #expect(parsed["ts"] == .number(1_795_946_400_250))
        #expect(parsed["rule"] == .string("hot-\(name)"))
        #expect(parsed["transition"] == .string("fire"))
        #expect(parsed["labels"] == .object(labels.map { (key: $0.name, value: .string($0.value)) }))
        #expect(parsed["value"] == (value ?? .null))
        #expect(parsed["reason"] == .string(reason))
    }
}
