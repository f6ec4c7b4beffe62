import FileFormats
import Rules

/// One alert as Alertmanager's API v2 takes it (`POST /api/v2/alerts`): identified by its labels.
public struct Alert: Sendable, Equatable {
    /// `alertname` (the rule id), `severity`, then one per capture of the instance.
    public var labels: [(name: String, value: String)]
    /// `description`, `reason`, `value`.
    public var annotations: [(name: String, value: String)]
    /// Unix milliseconds.
    public var startsAt: Int64
    /// When it stops (a cleared instance: the clear's time; a firing one: a while after the next re-post, so
    /// that an engine that died resolves by itself).
    public var endsAt: Int64
    public var generatorURL: String?

    public init(
        labels: [(name: String, value: String)],
        annotations: [(name: String, value: String)],
        startsAt: Int64,
        endsAt: Int64,
        generatorURL: String? = nil
    ) {
        self.labels = labels
        self.annotations = annotations
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.generatorURL = generatorURL
    }

    public static func == (lhs: Alert, rhs: Alert) -> Bool {
        lhs.labels.elementsEqual(rhs.labels, by: ==) && lhs.annotations.elementsEqual(rhs.annotations, by: ==)
            && lhs.startsAt == rhs.startsAt && lhs.endsAt == rhs.endsAt && lhs.generatorURL == rhs.generatorURL
    }

    /// The labels as one text: two alerts with the same key are the same alert to Alertmanager.
    public var key: String { labels.map { "\($0.name)=\($0.value)" }.joined(separator: "\u{1}") }

    /// The labels of a rule instance: `alertname`, `severity`, then each capture (a capture named like one of
    /// those two is prefixed `capture_`, so it cannot replace them).
    public static func labels(
        rule: String,
        severity: Rule.Severity,
        captures: [Label]
    ) -> [(name: String, value: String)] {
        [("alertname", rule), ("severity", severity.rawValue)]
            + captures.map { (["alertname", "severity"].contains($0.name) ? "capture_" + $0.name : $0.name, $0.value) }
    }

    var json: JSONValue {
        var pairs: [(key: String, value: JSONValue)] = [
            ("labels", .object(labels.map { (key: $0.name, value: .string($0.value)) })),
            ("annotations", .object(annotations.map { (key: $0.name, value: .string($0.value)) })),
            ("startsAt", .string(Timestamp.rfc3339(startsAt))),
            ("endsAt", .string(Timestamp.rfc3339(endsAt))),
        ]
        if let generatorURL { pairs.append(("generatorURL", .string(generatorURL))) }
        return .object(pairs)
    }
}
