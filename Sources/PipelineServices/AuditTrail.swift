import Foundation
import Rules

/// `--audit FILE`: one JSON line per transition and per command, with the rule's source file:line,
/// a hash of its definition, the instance labels, the reading that decided it and the reason —
/// so anyone can answer "why did cooling switch on at 03:12?".
public final class AuditTrail: @unchecked Sendable {
    private let handle: FileHandle
    private let lock = NSLock()

    public init(path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw RuleFilesError("\(path): cannot create the audit file")
            }
        }
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
    }

    /// Records a transition.
    public func record(_ transition: TransitionRecord, rule: Rule?) {
        var pairs: [(key: String, value: JSONValue)] = [
            ("ts", .number(Double(transition.timestamp))),
            ("event", .string("transition")),
            ("rule", .string(transition.ruleID)),
            ("transition", .string(transition.transition.rawValue)),
        ]
        pairs += Self.ruleFields(rule)
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
        write(.object(pairs))
    }

    /// Records a command (an action) as it is sent.
    public func record(_ action: FiredAction, rule: Rule?) {
        var pairs: [(key: String, value: JSONValue)] = [
            ("ts", .number(Double(action.timestamp))),
            ("event", .string("command")),
            ("rule", .string(action.ruleID)),
            ("transition", .string(action.transition.rawValue)),
        ]
        pairs += Self.ruleFields(rule)
        pairs += [("labels", Self.labels(action.labels)), ("reason", .string(action.reason))]
        switch action.action {
        case .publish(let topic, let payload, _, _): pairs += [("topic", .string(topic)), ("payload", payload)]
        case .log(let message): pairs.append(("log", .string(message)))
        case .command(let arguments, _): pairs.append(("command", .array(arguments.map(JSONValue.string))))
        }
        write(.object(pairs))
    }

    private static func ruleFields(_ rule: Rule?) -> [(key: String, value: JSONValue)] {
        guard let rule else { return [] }
        return [
            ("source", .string("\(rule.location.file):\(rule.location.line)")),
            ("definition", .string(rule.definitionHash)),
        ]
    }

    private static func labels(_ labels: [Label]) -> JSONValue {
        .object(labels.map { ($0.name, .string($0.value)) })
    }

    private func write(_ value: JSONValue) {
        let line = Data((value.jsonText + "\n").utf8)
        lock.withLock { try? handle.write(contentsOf: line) }
    }
}
