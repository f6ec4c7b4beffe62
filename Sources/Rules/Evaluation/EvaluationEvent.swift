import FileFormats

/// A reading as the evaluator sees it: a topic, the raw payload and the time it happened (Unix ms).
public struct Reading: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var timestamp: Int64

    public init(topic: String, payload: [UInt8], timestamp: Int64) {
        self.topic = topic
        self.payload = payload
        self.timestamp = timestamp
    }

    public init(topic: String, payload: String, timestamp: Int64) {
        self.init(topic: topic, payload: Array(payload.utf8), timestamp: timestamp)
    }
}

/// A captured label of a rule instance (`rack=a1`).
public struct Label: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var value: String
    public var description: String { "\(name)=\(value)" }

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// Which way an instance moved.
public enum TransitionKind: String, Hashable, Sendable {
    case fire, clear
}

/// An action to run, with its templates filled in.
public enum RenderedAction: Hashable, Sendable {
    case publish(topic: String, payload: JSONValue, qos: Int, retain: Bool)
    case log(message: String)
    case command(arguments: [String], timeoutMilliseconds: Int64)
    case webhook(url: String, body: JSONValue, timeoutMilliseconds: Int64)

    /// The bytes to publish: a string payload as its text, anything else as JSON.
    public static func payloadBytes(_ payload: JSONValue) -> [UInt8] {
        if case .string(let text) = payload { return Array(text.utf8) }
        return payload.jsonBytes
    }

}

/// One action produced by one transition of one instance.
public struct FiredAction: Hashable, Sendable {
    /// The transition that ran it (time, rule, labels, severity, reason, value).
    public var decision: TransitionRecord
    public var action: RenderedAction

    public var timestamp: Int64 {
        get { decision.timestamp }
        set { decision.timestamp = newValue }
    }
    public var ruleID: String { decision.ruleID }
    public var transition: TransitionKind { decision.transition }
    public var labels: [Label] { decision.labels }
    public var severity: Rule.Severity { decision.severity }
    public var reason: String {
        get { decision.reason }
        set { decision.reason = newValue }
    }
    public var value: JSONValue? { decision.value }
}

/// One transition of one instance, whether or not the rule has actions for it.
public struct TransitionRecord: Hashable, Sendable {
    public var timestamp: Int64
    public var ruleID: String
    public var transition: TransitionKind
    public var labels: [Label]
    public var severity: Rule.Severity
    public var reason: String
    public var value: JSONValue?
    /// When the reading that decided it arrived (nil when no reading did, as for `stale`).
    public var readingTimestamp: Int64?
    /// A combined rule's leaves or a group's members as they stood (empty for a single condition).
    public var conditions: [ConditionReport] = []
}

/// Why a reading could not be used by a rule.
public enum ReadingProblem: Error, Hashable, Sendable, CustomStringConvertible {
    /// A captured topic level is not `[A-Za-z0-9_.-]{1,64}`: it never reaches a topic.
    case unsafeCapture(name: String, value: String)
    /// The payload has no value at the rule's field.
    case missingField(String)
    /// The rule needs a number and the value is something else.
    case notANumber
    /// An `equals` rule got a value of another type.
    case typeMismatch

    /// A short, stable name for counting.
    public var code: String {
        switch self {
        case .unsafeCapture: "unsafe_capture"
        case .missingField: "missing_field"
        case .notANumber: "not_a_number"
        case .typeMismatch: "type_mismatch"
        }
    }

    public var description: String {
        switch self {
        case .unsafeCapture(let name, let value):
            "captured {\(name)} = '\(value.debugDescription.dropFirst().dropLast())' is not [A-Za-z0-9_.-]{1,64}"
        case .missingField(let field): "no value at field '\(field)'"
        case .notANumber: "the value is not a number"
        case .typeMismatch: "the value's type differs from the rule's 'equals'"
        }
    }
}

/// What the evaluator reports besides actions.
public enum EvaluationEvent: Hashable, Sendable {
    /// An instance fired or cleared; its actions follow as `.action` events.
    case transition(TransitionRecord)
    /// An action to run.
    case action(FiredAction)
    /// A reading a rule could not use; the instance's condition became unknown.
    case unusable(ruleID: String, topic: String, problem: ReadingProblem, timestamp: Int64)
    /// An instance hit `max_transitions` and holds its state until the window allows a transition.
    case transitionsLimited(ruleID: String, labels: [Label], timestamp: Int64, until: Int64)
    /// A transition the rule wants is held back (`heldBy`: `min_off`, `min_on`, `cooldown` or `max_transitions`)
    /// until `until`; said once when the hold starts.
    case transitionHeld(
        ruleID: String,
        labels: [Label],
        timestamp: Int64,
        transition: TransitionKind,
        heldBy: String,
        until: Int64
    )
    /// An instance started (`isFlapping`) or stopped flapping (`flapping:`): `percent` of its recent results
    /// changed; while flapping it is held in the state the rule names.
    case flapping(ruleID: String, labels: [Label], timestamp: Int64, isFlapping: Bool, percent: Double)
    /// A reload changed only the length of a window: that window started over (its readings were dropped).
    case windowRestarted(ruleID: String, window: String)
    /// A sensor's `seq` skipped `missing` readings: they were lost somewhere before the engine.
    case sequenceGap(topic: String, missing: Int64, timestamp: Int64)
    /// A reading with a `seq` already seen on its topic; it was dropped before evaluation.
    case duplicate(topic: String, sequence: Int64, timestamp: Int64)
}

/// The rules engine as a pure reducer: readings and clock advances in, events out.
///
/// Time is passed in (Unix ms). Timers (`for`, `stale`, deferred transitions) fire at their due time
/// when `advance(to:)` passes it, stamped with that due time. A reading at time t first lets every timer
/// due before t fire, then is evaluated; timers due at exactly t fire on the next `advance(to:)`.
