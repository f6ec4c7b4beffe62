import HeapModule

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

    /// The bytes to publish: a string payload as its text, anything else as JSON.
    public static func payloadBytes(_ payload: JSONValue) -> [UInt8] {
        if case .string(let text) = payload { return Array(text.utf8) }
        return Array(payload.jsonText.utf8)
    }
}

/// One action produced by one transition of one instance.
public struct FiredAction: Hashable, Sendable {
    public var timestamp: Int64
    public var ruleID: String
    public var transition: TransitionKind
    public var labels: [Label]
    public var severity: Rule.Severity
    public var reason: String
    public var value: JSONValue?
    public var action: RenderedAction
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
    case flapping(ruleID: String, labels: [Label], timestamp: Int64, until: Int64)
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
public struct Evaluator: Sendable {
    public internal(set) var ruleSet: RuleSet
    /// The latest time seen.
    public internal(set) var now: Int64 = .min
    var instances: [[[String]: Instance]]
    var timers = TimerHeap()
    private var matchBuffer: [Int] = []
    /// The last `seq` seen per topic, for loss accounting.
    private var sequences: [String: Int64] = [:]
    /// Instances whose phase or last transition changed, for `takeChangedInstances()`.
    var changed: [InstanceReference] = []
    /// Whether to remember changed instances for `takeChangedInstances()` (for `--state-dir`).
    public var tracksChanges = false

    struct InstanceReference: Hashable, Sendable {
        var rule: Int
        var labels: [String]
    }

    /// Creates an evaluator with no instances.
    public init(ruleSet: RuleSet) {
        self.ruleSet = ruleSet
        self.instances = Array(repeating: [:], count: ruleSet.rules.count)
    }

    /// The earliest time a timer is due, if any.
    public var nextDeadline: Int64? { timers.peekDue() }

    /// The number of rule instances (rule × captured labels) alive.
    public var instanceCount: Int { instances.reduce(0) { $0 + $1.count } }

    /// Evaluates one reading; appends what happened to `events`.
    public mutating func process(_ reading: Reading, into events: inout [EvaluationEvent]) {
        advance(to: reading.timestamp - 1, into: &events)
        let time = max(reading.timestamp, now)
        now = time
        let levels = reading.topic.split(separator: "/", omittingEmptySubsequences: false)
        matchBuffer.removeAll(keepingCapacity: true)
        ruleSet.index.matches(levels, into: &matchBuffer)
        guard !matchBuffer.isEmpty else { return }
        let payload = Evaluator.decode(reading.payload)
        guard checkSequence(of: payload, topic: reading.topic, at: time, into: &events) else { return }
        for ruleIndex in matchBuffer {
            let rule = ruleSet.rules[ruleIndex]
            guard let captured = rule.topic.captures(in: levels) else { continue }
            if let unsafe = zip(rule.topic.captureNames, captured).first(where: { !TopicPattern.isSafeCaptureValue($1) }
            ) {
                events.append(
                    .unusable(
                        ruleID: rule.id,
                        topic: reading.topic,
                        problem: .unsafeCapture(name: unsafe.0, value: unsafe.1),
                        timestamp: time
                    )
                )
                continue
            }
            var instance = instances[ruleIndex][captured] ?? Instance(labels: captured)
            switch Evaluator.extract(rule: rule, from: payload) {
            case .success(let value):
                instance.lastValue = value
                instance.lastReadingAt = time
                instance.stale = false
                instance.holds = Evaluator.holds(rule: rule, value: value, firing: instance.phase.isFiring)
                if instance.holds, instance.holdsSince == nil { instance.holdsSince = time }
                if !instance.holds { instance.holdsSince = nil }
            case .failure(let problem):
                events.append(.unusable(ruleID: rule.id, topic: reading.topic, problem: problem, timestamp: time))
                switch rule.onUnknown {
                case .keep: break
                case .fire:
                    instance.holds = true
                    if instance.holdsSince == nil { instance.holdsSince = time }
                case .clear:
                    instance.holds = false
                    instance.holdsSince = nil
                }
                instance.lastUnusable = problem
            }
            step(&instance, ruleIndex: ruleIndex, at: time, into: &events)
            instances[ruleIndex][captured] = instance
        }
    }

    /// Moves the clock to `time`, firing every timer due at or before it in time order.
    public mutating func advance(to time: Int64, into events: inout [EvaluationEvent]) {
        while let entry = timers.popIfDue(atOrBefore: time) {
            guard var instance = instances[entry.rule][entry.labels], instance.timerGeneration == entry.generation
            else {
                continue
            }
            now = max(now, entry.due)
            let rule = ruleSet.rules[entry.rule]
            if let stale = rule.staleMilliseconds, let last = instance.lastReadingAt, entry.due >= last + stale {
                instance.stale = true
            }
            step(&instance, ruleIndex: entry.rule, at: entry.due, into: &events)
            instances[entry.rule][entry.labels] = instance
        }
        now = max(now, time)
    }

    /// Counts gaps in a sensor's `seq` and reports duplicates; false when the reading is a duplicate.
    ///
    /// A `seq` that goes back to 0 or 1, or more than 1,000 below the last, is a sensor that restarted:
    /// counting starts over. A duplicate is a redelivery (QoS 1 after a reconnect) or a device repeating itself.
    private mutating func checkSequence(
        of payload: JSONValue,
        topic: String,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) -> Bool {
        guard case .object = payload, case .number(let number)? = payload["seq"], number == number.rounded(),
            abs(number) < 9e15
        else { return true }
        return Evaluator.record(
            Int64(number),
            after: &sequences[topic, default: .min],
            topic: topic,
            at: time,
            into: &events
        )
    }

    /// Compares `sequence` with the topic's `last` (updated in place: one dictionary lookup per reading).
    private static func record(
        _ sequence: Int64,
        after last: inout Int64,
        topic: String,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) -> Bool {
        if last == .min || (sequence < last && (sequence <= 1 || sequence < last - 1000)) {
            last = sequence  // the first reading, or a restarted sensor
            return true
        }
        if sequence <= last {
            events.append(.duplicate(topic: topic, sequence: sequence, timestamp: time))
            return false
        }
        if sequence > last + 1 {
            events.append(.sequenceGap(topic: topic, missing: sequence - last - 1, timestamp: time))
        }
        last = sequence
        return true
    }

    // MARK: The state machine

    private mutating func step(
        _ instance: inout Instance,
        ruleIndex: Int,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) {
        let rule = ruleSet.rules[ruleIndex]
        let phaseBefore = instance.phase
        let transitionBefore = instance.lastTransitionAt
        defer {
            if tracksChanges, instance.phase != phaseBefore || instance.lastTransitionAt != transitionBefore {
                changed.append(InstanceReference(rule: ruleIndex, labels: instance.labels))
            }
        }
        instance.deferredUntil = nil
        let wantsFiring = instance.stale || instance.holds
        switch instance.phase {
        case .inactive:
            guard wantsFiring else { break }
            if instance.stale || rule.forMilliseconds == 0 {
                transition(&instance, rule: rule, to: .fire, at: time, into: &events)
            } else {
                let since = instance.holdsSince ?? time
                instance.phase = .pending(since: since)
                if time >= since + rule.forMilliseconds {
                    transition(&instance, rule: rule, to: .fire, at: time, into: &events)
                }
            }
        case .pending(let since):
            if !wantsFiring {
                instance.phase = .inactive
            } else if instance.stale || time >= since + rule.forMilliseconds {
                transition(&instance, rule: rule, to: .fire, at: time, into: &events)
            }
        case .firing:
            if !wantsFiring {
                transition(&instance, rule: rule, to: .clear, at: time, into: &events)
            }
        }
        schedule(&instance, ruleIndex: ruleIndex, rule: rule)
    }

    private func earliestTransition(
        _ instance: Instance,
        rule: Rule,
        to kind: TransitionKind
    ) -> (Int64, flapping: Bool) {
        guard let last = instance.lastTransitionAt else { return (.min, false) }
        var earliest = last + rule.cooldownMilliseconds
        switch kind {
        case .fire: earliest = max(earliest, last + rule.minOffMilliseconds)
        case .clear: earliest = max(earliest, last + rule.minOnMilliseconds)
        }
        if let limit = rule.maxTransitions, instance.recentTransitions.count >= limit.count {
            let windowOpens =
                instance.recentTransitions[instance.recentTransitions.count - limit.count] + limit.windowMilliseconds
            if windowOpens > earliest { return (windowOpens, true) }
        }
        return (earliest, false)
    }

    private func transition(
        _ instance: inout Instance,
        rule: Rule,
        to kind: TransitionKind,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) {
        let (earliest, flapping) = earliestTransition(instance, rule: rule, to: kind)
        guard time >= earliest else {
            instance.deferredUntil = earliest
            if flapping && !instance.flapping {
                instance.flapping = true
                events.append(
                    .flapping(
                        ruleID: rule.id,
                        labels: labels(of: instance, rule: rule),
                        timestamp: time,
                        until: earliest
                    )
                )
            }
            return
        }
        instance.flapping = false
        instance.lastTransitionAt = time
        if let limit = rule.maxTransitions {
            instance.recentTransitions.append(time)
            if instance.recentTransitions.count > limit.count { instance.recentTransitions.removeFirst() }
        }
        let reason = reasonText(instance, rule: rule, kind: kind)
        instance.phase = kind == .fire ? .firing(since: time) : .inactive
        if kind == .clear {
            // Re-evaluate the last value against the fire threshold now that the instance is inactive.
            if let value = instance.lastValue, !instance.stale {
                instance.holds = Evaluator.holds(rule: rule, value: value, firing: false)
                instance.holdsSince = instance.holds ? time : nil
            }
        }
        let labels = labels(of: instance, rule: rule)
        events.append(
            .transition(
                TransitionRecord(
                    timestamp: time,
                    ruleID: rule.id,
                    transition: kind,
                    labels: labels,
                    severity: rule.severity,
                    reason: reason,
                    value: instance.lastValue,
                    readingTimestamp: instance.stale ? nil : instance.lastReadingAt
                )
            )
        )
        for action in kind == .fire ? rule.onFire : rule.onClear {
            events.append(
                .action(
                    FiredAction(
                        timestamp: time,
                        ruleID: rule.id,
                        transition: kind,
                        labels: labels,
                        severity: rule.severity,
                        reason: reason,
                        value: instance.lastValue,
                        action: render(
                            action,
                            rule: rule,
                            labels: labels,
                            value: instance.lastValue,
                            kind: kind,
                            reason: reason,
                            time: time
                        )
                    )
                )
            )
        }
    }

    mutating func schedule(_ instance: inout Instance, ruleIndex: Int, rule: Rule) {
        var due: Int64?
        func consider(_ time: Int64?) {
            guard let time else { return }
            due = min(due ?? time, time)
        }
        consider(instance.deferredUntil)
        if case .pending(let since) = instance.phase { consider(since + rule.forMilliseconds) }
        if let stale = rule.staleMilliseconds, let last = instance.lastReadingAt, !instance.stale {
            consider(last + stale)
        }
        guard due != instance.timerDue else { return }
        instance.timerDue = due
        instance.timerGeneration &+= 1
        if let due {
            timers.push(
                TimerHeap.Entry(
                    due: due,
                    rule: ruleIndex,
                    labels: instance.labels,
                    generation: instance.timerGeneration
                )
            )
        }
    }

    // MARK: Values

    static func decode(_ payload: [UInt8]) -> JSONValue {
        if let value = JSONValue(parsing: payload) { return value }
        // Not JSON: a raw text payload (`open`, `ON`), usable by `equals` rules on strings.
        return .string(String(decoding: payload, as: UTF8.self).trimmingWhitespace())
    }

    static func extract(rule: Rule, from payload: JSONValue) -> Result<JSONValue, ReadingProblem> {
        let value: JSONValue
        switch payload {
        case .object, .array:
            guard let found = payload.value(at: rule.field) else {
                return .failure(.missingField(rule.field.joined(separator: ".")))
            }
            value = found
        default:
            value = payload
        }
        switch rule.condition {
        case .equals(.number):
            guard case .number = value else { return .failure(.notANumber) }
        case .equals(.string):
            guard case .string = value else { return .failure(.typeMismatch) }
        case .equals(.bool):
            guard case .bool = value else { return .failure(.typeMismatch) }
        case .equals:
            break
        default:
            guard case .number = value else { return .failure(.notANumber) }
        }
        return .success(value)
    }

    /// Whether the condition holds; a firing instance of an `above`/`below` rule uses its `clear` threshold.
    static func holds(rule: Rule, value: JSONValue, firing: Bool) -> Bool {
        switch rule.condition {
        case .equals(let expected): return value == expected
        case .above(let threshold):
            guard case .number(let number) = value else { return false }
            return firing ? number > (rule.clear ?? threshold) : number > threshold
        case .below(let threshold):
            guard case .number(let number) = value else { return false }
            return firing ? number < (rule.clear ?? threshold) : number < threshold
        case .between(let low, let high):
            guard case .number(let number) = value else { return false }
            return number >= low && number <= high
        case .outside(let low, let high):
            guard case .number(let number) = value else { return false }
            return number < low || number > high
        }
    }

    private func labels(of instance: Instance, rule: Rule) -> [Label] {
        zip(rule.topic.captureNames, instance.labels).map { Label(name: $0, value: $1) }
    }

    private func reasonText(_ instance: Instance, rule: Rule, kind: TransitionKind) -> String {
        if instance.stale, let stale = rule.staleMilliseconds {
            return kind == .fire ? "no reading for \(RuleDuration.format(stale)) (stale)" : "readings resumed"
        }
        if instance.lastReadingAt == nil
            || (instance.lastUnusable != nil && rule.onUnknown != .keep
                && kind == (rule.onUnknown == .fire ? .fire : .clear))
        {
            if let problem = instance.lastUnusable {
                return "unusable reading: \(problem) (on_unknown: \(rule.onUnknown.rawValue))"
            }
        }
        let valueText =
            instance.lastValue.map { value -> String in
                if case .number(let number) = value { return JSONValue.format(number) }
                return value.jsonText
            } ?? "no value"
        let condition: String
        switch rule.condition {
        case .above(let threshold):
            condition =
                kind == .fire
                ? "above \(JSONValue.format(threshold))" : "at or below \(JSONValue.format(rule.clear ?? threshold))"
        case .below(let threshold):
            condition =
                kind == .fire
                ? "below \(JSONValue.format(threshold))" : "at or above \(JSONValue.format(rule.clear ?? threshold))"
        case .between(let low, let high):
            condition = "\(kind == .fire ? "" : "not ")between \(JSONValue.format(low)) and \(JSONValue.format(high))"
        case .outside(let low, let high):
            condition = "\(kind == .fire ? "" : "not ")outside \(JSONValue.format(low))..\(JSONValue.format(high))"
        case .equals(let expected):
            condition = "\(kind == .fire ? "equals" : "no longer equals") \(expected.jsonText)"
        }
        let duration =
            kind == .fire && rule.forMilliseconds > 0 ? " for \(RuleDuration.format(rule.forMilliseconds))" : ""
        return "value \(valueText) \(condition)\(duration)"
    }

    private func render(
        _ action: Action,
        rule: Rule,
        labels: [Label],
        value: JSONValue?,
        kind: TransitionKind,
        reason: String,
        time: Int64
    ) -> RenderedAction {
        let threshold: JSONValue
        switch rule.condition {
        case .above(let number), .below(let number): threshold = .number(number)
        default: threshold = .string(rule.thresholdText)
        }
        let lookup: (String) -> JSONValue? = { name in
            switch name {
            case "value": return value ?? .null
            case "rule": return .string(rule.id)
            case "threshold": return threshold
            case "severity": return .string(rule.severity.rawValue)
            case "transition": return .string(kind.rawValue)
            default: return labels.first { $0.name == name }.map { .string($0.value) }
            }
        }
        let textLookup: (String) -> String? = { name in
            guard let value = lookup(name) else { return nil }
            if case .string(let text) = value { return text }
            return value.jsonText
        }
        switch action.handler {
        case .publish(let topic, let payloadTemplate, let qos, let retain):
            var payload = payloadTemplate?.render(lookup) ?? .object([])
            if case .object = payload {
                for (key, added) in [
                    ("rule", JSONValue.string(rule.id)), ("reason", .string(reason)), ("value", value ?? .null),
                    ("ts", .number(Double(time))),
                ] where payload[key] == nil {
                    payload = payload.setting(key, to: added)
                }
            }
            return .publish(topic: topic.render(textLookup), payload: payload, qos: qos, retain: retain)
        case .log(let message):
            return .log(message: message.render(textLookup))
        case .command(let arguments, let timeout):
            return .command(arguments: arguments.map { $0.render(textLookup) }, timeoutMilliseconds: timeout)
        }
    }
}

// MARK: - Instance state

extension Evaluator {
    struct Instance: Sendable {
        enum Phase: Sendable, Hashable {
            case inactive
            case pending(since: Int64)
            case firing(since: Int64)

            var isFiring: Bool {
                if case .firing = self { return true }
                return false
            }
        }

        var labels: [String]
        var phase = Phase.inactive
        /// Whether the condition holds, from the last usable reading (or the unknown policy).
        var holds = false
        var holdsSince: Int64?
        var stale = false
        var lastValue: JSONValue?
        var lastReadingAt: Int64?
        var lastUnusable: ReadingProblem?
        var lastTransitionAt: Int64?
        var recentTransitions: [Int64] = []
        var flapping = false
        var deferredUntil: Int64?
        var timerDue: Int64?
        var timerGeneration: UInt32 = 0

        init(labels: [String]) {
            self.labels = labels
        }
    }
}

/// Timers by due time; entries whose generation is outdated are skipped when popped.
struct TimerHeap: Sendable {
    struct Entry: Sendable, Comparable {
        var due: Int64
        var rule: Int
        var labels: [String]
        var generation: UInt32

        static func < (lhs: Entry, rhs: Entry) -> Bool { lhs.due < rhs.due }
        static func == (lhs: Entry, rhs: Entry) -> Bool { lhs.due == rhs.due }
    }

    private var heap = Heap<Entry>()

    func peekDue() -> Int64? { heap.min?.due }

    mutating func push(_ entry: Entry) { heap.insert(entry) }

    mutating func popIfDue(atOrBefore time: Int64) -> Entry? {
        guard let first = heap.min, first.due <= time else { return nil }
        return heap.removeMin()
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[start...end])
    }
}
