import FileFormats
import Foundation
import Rules
import Testing

/// The shipped single-condition rules as they were before combinations, replayed over recorded readings:
/// every transition (time, instance, value, reason) and every action must be what the engine of a6fb894
/// decided (its output is pinned in `Fixtures/before-combinations/*.expected`).
@Suite("Single conditions decide as before combinations")
struct DifferentialReplayTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/before-combinations")
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples/readings.jsonl")

    /// The same lines `oldreplay` printed (see the fixtures' README).
    static func decisions(readingsAt url: URL) throws -> String {
        let readings = try RecordedReadings.parse(String(contentsOf: url, encoding: .utf8), path: url.path)
        let sources = try ["server-room", "greenhouse", "cold-chain"].map { name in
            let path = fixtures.appendingPathComponent("\(name).yaml").path
            return RuleSource(path: path, text: try String(contentsOfFile: path, encoding: .utf8))
        }
        let outcome = Replay.run(
            try RuleLoader.load(sources),
            readings: readings,
            end: readings.last!.timestamp + 600_000
        )
        var lines = outcome.transitions.map { record in
            let labels = record.labels.map(\.description).joined(separator: ",")
            return
                "transition \(record.timestamp) \(record.ruleID) \(record.transition.rawValue) \(labels) "
                + "\(record.value?.jsonText ?? "-") \(record.readingTimestamp.map(String.init) ?? "-") \(record.reason)"
        }
        lines += outcome.actions.map(Replay.jsonLine)
        lines.append("unusable \(outcome.unusable.sorted { $0.key < $1.key })")
        return lines.joined(separator: "\n") + "\n"
    }

    @Test(arguments: ["readings", "examples"])
    func replayDecidesAsBefore(recording: String) throws {
        let readings = recording == "examples" ? Self.examples : Self.fixtures.appendingPathComponent("readings.jsonl")
        let expected = try String(
            contentsOf: Self.fixtures.appendingPathComponent("\(recording).expected"),
            encoding: .utf8
        )
        let actual = try Self.decisions(readingsAt: readings)
        #expect(actual.split(separator: "\n").count == expected.split(separator: "\n").count)
        for (line, (new, old)) in zip(actual.split(separator: "\n"), expected.split(separator: "\n")).enumerated()
        where new != old {
            Issue.record("line \(line + 1) differs:\n  before: \(old)\n  now:    \(new)")
            break
        }
    }
}
