import FileFormats
import Foundation
import InputFiles
import Rules
import Synchronization

/// `--audit FILE`: one JSON line per transition and per command, with the rule's source file:line,
/// a hash of its definition, the instance labels, the reading that decided it and the reason —
/// so anyone can answer "why did cooling switch on at 03:12?".
public final class AuditTrail: Sendable {
    private let handle: Mutex<FileHandle>

    public init(path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw RuleFilesError("\(path): cannot create the audit file")
            }
        }
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        self.handle = Mutex(handle)
    }

    /// Appends lines (without their newlines) in one write; throws when the write failed (disk full).
    public func write(lines: [String]) throws {
        guard !lines.isEmpty else { return }
        let data = Data(lines.map { $0 + "\n" }.joined().utf8)
        try handle.withLock { try $0.write(contentsOf: data) }
    }

    /// Appends `lines` unless the file already ends with them: after a `kill -9`, the state journal's last
    /// record may hold audit lines that were decided but never written here. Returns whether it wrote.
    @discardableResult
    public func completeWith(_ lines: [String]) throws -> Bool {
        guard !lines.isEmpty else { return false }
        let expected = Data(lines.map { $0 + "\n" }.joined().utf8)
        return try handle.withLock { handle in
            let end = try handle.seekToEnd()
            if end >= UInt64(expected.count) {
                try handle.seek(toOffset: end - UInt64(expected.count))
                let tail = try handle.read(upToCount: expected.count) ?? Data()
                try handle.seekToEnd()
                if tail == expected { return false }
            }
            try handle.write(contentsOf: expected)
            return true
        }
    }

    /// The audit line of a transition.
    public static func line(for transition: TransitionRecord, in ruleSet: RuleSet) -> String {
        var pairs: [(key: String, value: JSONValue)] = [
            ("ts", .number(Double(transition.timestamp))),
            ("event", .string("transition")),
            ("rule", .string(transition.ruleID)),
            ("transition", .string(transition.transition.rawValue)),
        ]
        pairs += Self.ruleFields(transition.ruleID, in: ruleSet)
        pairs += [
            ("labels", Self.labels(transition.labels)),
            ("reason", .string(transition.reason)),
            ("severity", .string(transition.severity.rawValue)),
            (
                "reading",
                transition.readingTimestamp.map {
                    .object([("ts", .number(Double($0))), ("value", transition.value ?? .null)])
                } ?? .null
            ),
        ]
        return JSONValue.object(pairs).jsonText
    }

    /// The audit line of a command.
    public static func line(for action: FiredAction, in ruleSet: RuleSet) -> String {
        var pairs: [(key: String, value: JSONValue)] = [
            ("ts", .number(Double(action.timestamp))),
            ("event", .string("command")),
            ("rule", .string(action.ruleID)),
            ("transition", .string(action.transition.rawValue)),
        ]
        pairs += Self.ruleFields(action.ruleID, in: ruleSet)
        pairs += [("labels", Self.labels(action.labels)), ("reason", .string(action.reason))]
        switch action.action {
        case .publish(let topic, let payload, _, _): pairs += [("topic", .string(topic)), ("payload", payload)]
        case .log(let message): pairs.append(("log", .string(message)))
        case .command(let arguments, _): pairs.append(("command", .array(arguments.map(JSONValue.string))))
        }
        return JSONValue.object(pairs).jsonText
    }

    private static func ruleFields(_ ruleID: String, in ruleSet: RuleSet) -> [(key: String, value: JSONValue)] {
        guard let index = ruleSet.index(ofRuleWithID: ruleID) else { return [] }
        let location = ruleSet.rules[index].location
        return [
            ("source", .string("\(location.file):\(location.line)")),
            ("definition", .string(ruleSet.definitionHashes[index])),
        ]
    }

    private static func labels(_ labels: [Label]) -> JSONValue {
        .object(labels.map { ($0.name, .string($0.value)) })
    }
}
