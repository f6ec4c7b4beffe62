import FileFormats
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
    /// Every instance, addressed by slot. Slots never move until the rules are replaced, so readings,
    /// timers and change tracking refer to instances by a plain integer and mutate them in place.
    var instances: ContiguousArray<Instance> = []
    /// Per rule: captured label values → slot.
    var slotsByLabels: [[[String]: Int32]]
    /// Per topic seen: the instances it feeds (resolved once per rule set) and its last `seq`.
    var routes: [String: Route] = [:]
    var effects = Effects()
    private var matchBuffer: [Int] = []
    /// The last unusable reading's problem per slot (rare, so not in every instance), for reasons.
    var lastProblems: [Int32: ReadingProblem] = [:]
    /// The reason of each instance's last transition, by slot (for `instanceReports`).
    var lastReasons: [Int32: String] = [:]
    /// Readings that reached at least one rule instance (not duplicates, not on unmatched topics).
    public private(set) var evaluatedReadingCount = 0
    /// The `seq` of the reading `process` just evaluated, nil when it had none or was dropped
    /// (what `--state-dir` writes down, so a redelivery after a restart is known as a duplicate).
    public private(set) var lastAcceptedSequence: Int64?
    /// The current reading's `seq` and fields, by position in its route (reused: no allocation per reading).
    private var fieldValues: [JSONValue?] = []

    /// Whether to remember changed instances for `takeChangedInstances()` (for `--state-dir`).
    public var tracksChanges: Bool {
        get { effects.tracksChanges }
        set { effects.tracksChanges = newValue }
    }

    /// Creates an evaluator with no instances.
    public init(ruleSet: RuleSet) {
        self.ruleSet = ruleSet
        self.slotsByLabels = Array(repeating: [:], count: ruleSet.rules.count)
    }

    /// The earliest time a timer is due, if any.
    public var nextDeadline: Int64? { effects.timers.peekDue() }

    /// The number of instances whose timer is pending.
    public var pendingTimerCount: Int { instances.reduce(0) { $0 + ($1.timerDue == nil ? 0 : 1) } }

    /// The number of rule instances (rule × captured labels) alive.
    public var instanceCount: Int { instances.count }

    /// Evaluates one reading; appends what happened to `events`. Times are within `Timestamp.validRange`
    /// (the readers of outside input check it), so adding a rule's durations never overflows.
    public mutating func process(_ reading: Reading, into events: inout [EvaluationEvent]) {
        lastAcceptedSequence = nil
        advance(to: reading.timestamp == .min ? .min : reading.timestamp - 1, into: &events)
        let time = max(reading.timestamp, now)
        now = time
        var routeIndex = routes.index(forKey: reading.topic)
        if routeIndex == nil || routes.values[routeIndex!].resolution == nil {
            let resolution = resolve(topic: reading.topic)
            if let routeIndex {
                routes.values[routeIndex].resolution = resolution
            } else {
                routes[reading.topic] = Route(resolution: resolution)
                routeIndex = routes.index(forKey: reading.topic)
            }
        }
        let resolution = routes.values[routeIndex!].resolution!
        guard !resolution.targets.isEmpty else { return }
        let sequence = readFields(of: reading.payload, for: resolution)
        if let sequence {
            guard
                Evaluator.record(
                    sequence,
                    after: &routes.values[routeIndex!].lastSequence,
                    topic: reading.topic,
                    at: time,
                    into: &events
                )
            else { return }
            lastAcceptedSequence = sequence
        }
        evaluatedReadingCount &+= 1
        for target in resolution.targets {
            evaluate(topic: reading.topic, target: target, at: time, into: &events)
        }
    }

    /// Moves the clock to `time`, firing every timer due at or before it in time order.
    public mutating func advance(to time: Int64, into events: inout [EvaluationEvent]) {
        while let entry = effects.timers.popIfDue(atOrBefore: time) {
            let slot = Int(entry.slot)
            guard instances[slot].timerGeneration == entry.generation else { continue }
            now = max(now, entry.due)
            if let stale = ruleSet.cores[Int(entry.rule)].staleMilliseconds, let last = instances[slot].staleSince,
                entry.due >= last + stale
            {
                instances[slot].stale = true
            }
            step(slot: slot, at: entry.due, into: &events)
        }
        now = max(now, time)
    }

    private static func levels(of topic: String) -> [Substring] {
        TopicIndex.levels(of: topic)
    }

    /// The instances a topic feeds (created inactive) and the fields they read.
    private mutating func resolve(topic: String) -> Resolution {
        let levels = Evaluator.levels(of: topic)
        matchBuffer.removeAll(keepingCapacity: true)
        ruleSet.index.matches(levels, into: &matchBuffer)
        var targets: [RouteTarget] = []
        var fields: [Int] = []
        var keyRanges = [RuleSet.sequenceKeyRange]
        var previousCapture: [String] = []
        for ruleIndex in matchBuffer {
            let pattern = ruleSet.rules[ruleIndex].topic
            guard var captured = pattern.captures(in: levels) else { continue }
            // Rules on the same topic capture the same values: share one array among their instances.
            if captured == previousCapture { captured = previousCapture } else { previousCapture = captured }
            let fieldIndex = ruleSet.cores[ruleIndex].fieldIndex
            let position =
                fields.firstIndex(of: fieldIndex)
                ?? {
                    fields.append(fieldIndex)
                    if let range = ruleSet.keyRanges[fieldIndex] { keyRanges.append(range) }
                    return fields.count - 1
                }()
            let slot =
                captured.allSatisfy(TopicPattern.isSafeCaptureValue) ? self.slot(rule: ruleIndex, labels: captured) : -1
            targets.append(RouteTarget(rule: Int32(ruleIndex), slot: slot, field: Int32(position)))
        }
        return Resolution(
            targets: targets,
            fields: fields,
            keyRanges: keyRanges.count == fields.count + 1 ? keyRanges : nil
        )
    }

    /// Fills `fieldValues` (`seq`, then the route's fields) from a payload; returns its integral `seq`.
    private mutating func readFields(of payload: [UInt8], for resolution: Resolution) -> Int64? {
        let count = resolution.fields.count + 1
        if fieldValues.count < count {
            fieldValues.append(contentsOf: repeatElement(nil, count: count - fieldValues.count))
        }
        if let keyRanges = resolution.keyRanges {
            let shape = payload.withUnsafeBufferPointer { bytes in
                ruleSet.keyBytes.withUnsafeBufferPointer { keyBytes in
                    keyRanges.withUnsafeBufferPointer { ranges in
                        PayloadScanner.scan(bytes, keyBytes: keyBytes, keyRanges: ranges, into: &fieldValues)
                    }
                }
            }
            switch shape {
            case .object: return Evaluator.sequenceNumber(fieldValues[0])
            case .number(let number):
                fieldValues[0] = nil
                for position in 1..<count { fieldValues[position] = .number(number) }
                return nil
            case nil: break
            }
        }
        let decoded = Evaluator.decode(payload)
        switch decoded {
        case .object, .array:
            fieldValues[0] = decoded["seq"]
            for (position, fieldIndex) in resolution.fields.enumerated() {
                fieldValues[position + 1] = decoded.value(at: ruleSet.fields[fieldIndex])
            }
        default:
            fieldValues[0] = nil
            for position in 1..<count { fieldValues[position] = decoded }
        }
        return Evaluator.sequenceNumber(fieldValues[0])
    }

    /// The slot of an instance, created inactive when it does not exist yet.
    mutating func slot(rule ruleIndex: Int, labels: [String]) -> Int32 {
        if let slot = slotsByLabels[ruleIndex][labels] { return slot }
        let slot = Int32(instances.count)
        instances.append(Instance(rule: Int32(ruleIndex), labels: labels))
        slotsByLabels[ruleIndex][labels] = slot
        return slot
    }

    /// Applies one reading (its fields in `fieldValues`) to one instance.
    private mutating func evaluate(
        topic: String,
        target: RouteTarget,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) {
        let ruleIndex = Int(target.rule)
        guard target.slot >= 0 else {
            let rule = ruleSet.rules[ruleIndex]
            let captured = rule.topic.captures(in: Evaluator.levels(of: topic)) ?? []
            if let unsafe = zip(rule.topic.captureNames, captured).first(where: {
                !TopicPattern.isSafeCaptureValue($1)
            }) {
                events.append(
                    .unusable(
                        ruleID: rule.id,
                        topic: topic,
                        problem: .unsafeCapture(name: unsafe.0, value: unsafe.1),
                        timestamp: time
                    )
                )
            }
            return
        }
        let slot = Int(target.slot)
        let core = ruleSet.cores[ruleIndex]
        // The common case, a number for a threshold rule, without building a Result.
        if core.valueType == .number, !core.comparesByEquality,
            case .number(let number)? = fieldValues[Int(target.field) + 1]
        {
            let holds = core.holds(number: number, firing: instances[slot].phase.isFiring)
            instances[slot].observe(.number(number), holds: holds, at: time)
            step(slot: slot, at: time, into: &events)
            return
        }
        switch Evaluator.check(fieldValues[Int(target.field) + 1], core: core) {
        case .success(let value):
            let holds = Evaluator.holds(
                core,
                rule: ruleSet.rules[ruleIndex],
                value: value,
                firing: instances[slot].phase.isFiring
            )
            instances[slot].observe(value, holds: holds, at: time)
        case .failure(var problem):
            if case .missingField = problem {
                problem = .missingField(ruleSet.fields[core.fieldIndex].joined(separator: "."))
            }
            events.append(
                .unusable(ruleID: ruleSet.rules[ruleIndex].id, topic: topic, problem: problem, timestamp: time)
            )
            instances[slot].observeUnusable(policy: core.onUnknown, at: time)
            lastProblems[target.slot] = problem
        }
        step(slot: slot, at: time, into: &events)
    }

    /// An object payload's `seq`, when it is an integral number.
    private static func sequenceNumber(_ value: JSONValue?) -> Int64? {
        guard case .number(let number)? = value, number == number.rounded(), abs(number) < 9e15 else { return nil }
        return Int64(number)
    }

    /// Compares `sequence` with the topic's `last` (updated in place); false when the reading is a duplicate.
    ///
    /// A `seq` that goes back to 0 or 1, or more than 1,000 below the last, is a sensor that restarted:
    /// counting starts over. A duplicate is a redelivery (QoS 1 after a reconnect) or a device repeating itself.
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

    /// Moves one instance through its phases at `time`: transitions, schedules its timer, notes the change.
    mutating func step(slot: Int, at time: Int64, into events: inout [EvaluationEvent]) {
        let core = ruleSet.cores[Int(instances[slot].rule)]
        let phaseBefore = instances[slot].phase
        let transitionBefore = instances[slot].lastTransitionAt
        if let kind = Evaluator.decide(&instances[slot], core: core, at: time) {
            transition(slot: slot, to: kind, at: time, into: &events)
        }
        Evaluator.schedule(&instances[slot], slot: Int32(slot), core: core, timers: &effects.timers)
        if effects.tracksChanges,
            instances[slot].phase != phaseBefore || instances[slot].lastTransitionAt != transitionBefore
        {
            effects.changed.append(Int32(slot))
        }
    }

    /// The transition an instance wants at `time`, if any; it enters or leaves `pending` on the way.
    private static func decide(_ instance: inout Instance, core: RuleCore, at time: Int64) -> TransitionKind? {
        instance.deferredUntil = nil
        let wantsFiring = instance.stale || instance.holds
        switch instance.phase {
        case .inactive:
            guard wantsFiring else { return nil }
            if instance.stale || core.forMilliseconds == 0 { return .fire }
            let since = instance.holdsSince ?? time
            instance.phase = .pending(since: since)
            return time >= since + core.forMilliseconds ? .fire : nil
        case .pending(let since):
            guard wantsFiring else {
                instance.phase = .inactive
                return nil
            }
            return instance.stale || time >= since + core.forMilliseconds ? .fire : nil
        case .firing:
            return wantsFiring ? nil : .clear
        }
    }

    private static func earliestTransition(
        _ instance: Instance,
        core: RuleCore,
        to kind: TransitionKind
    ) -> (Int64, flapping: Bool) {
        guard let last = instance.lastTransitionAt else { return (.min, false) }
        var earliest = last + core.cooldownMilliseconds
        switch kind {
        case .fire: earliest = max(earliest, last + core.minOffMilliseconds)
        case .clear: earliest = max(earliest, last + core.minOnMilliseconds)
        }
        if let limit = core.maxTransitions, instance.recentTransitions.count >= limit.count {
            let windowOpens =
                instance.recentTransitions[instance.recentTransitions.count - limit.count] + limit.windowMilliseconds
            if windowOpens > earliest { return (windowOpens, true) }
        }
        return (earliest, false)
    }

    /// Makes the transition when cooldown, min_on/min_off and max_transitions allow it; defers it otherwise.
    private mutating func transition(
        slot: Int,
        to kind: TransitionKind,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) {
        var instance = instances[slot]
        defer { instances[slot] = instance }
        let core = ruleSet.cores[Int(instance.rule)]
        let (earliest, flapping) = Evaluator.earliestTransition(instance, core: core, to: kind)
        guard time >= earliest else {
            instance.deferredUntil = earliest
            if flapping && !instance.flapping {
                instance.flapping = true
                let rule = ruleSet.rules[Int(instance.rule)]
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
        let rule = ruleSet.rules[Int(instance.rule)]
        instance.flapping = false
        instance.lastTransitionAt = time
        if let limit = rule.maxTransitions {
            instance.recentTransitions.append(time)
            if instance.recentTransitions.count > limit.count { instance.recentTransitions.removeFirst() }
        }
        let reason = reasonText(instance, problem: lastProblems[Int32(slot)], rule: rule, kind: kind)
        lastReasons[Int32(slot)] = reason
        instance.phase = kind == .fire ? .firing(since: time) : .inactive
        if kind == .clear {
            // Re-evaluate the last value against the fire threshold now that the instance is inactive.
            if let value = instance.lastValue, !instance.stale {
                instance.holds = Evaluator.holds(
                    ruleSet.cores[Int(instance.rule)],
                    rule: rule,
                    value: value,
                    firing: false
                )
                instance.holdsSince = instance.holds ? time : nil
            }
        }
        let labels = labels(of: instance, rule: rule)
        let record = TransitionRecord(
            timestamp: time,
            ruleID: rule.id,
            transition: kind,
            labels: labels,
            severity: rule.severity,
            reason: reason,
            value: instance.lastValue,
            readingTimestamp: instance.stale ? nil : instance.lastReadingAt
        )
        events.append(.transition(record))
        for action in kind == .fire ? rule.onFire : rule.onClear {
            events.append(
                .action(
                    FiredAction(
                        decision: record,
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

    static func schedule(_ instance: inout Instance, slot: Int32, core: RuleCore, timers: inout TimerHeap) {
        var due = instance.deferredUntil
        if case .pending(let since) = instance.phase {
            due = min(due ?? .max, since + core.forMilliseconds)
        }
        if let stale = core.staleMilliseconds, let last = instance.staleSince, !instance.stale {
            due = min(due ?? .max, last + stale)
        }
        guard due != instance.timerDue else { return }
        instance.timerDue = due
        instance.timerGeneration &+= 1
        if let due {
            timers.push(
                TimerHeap.Entry(due: due, rule: instance.rule, slot: slot, generation: instance.timerGeneration)
            )
        }
    }

    // MARK: Values

    static func decode(_ payload: [UInt8]) -> JSONValue {
        if let value = JSONValue(parsing: payload) { return value }
        // Not JSON: a raw text payload (`open`, `ON`), usable by `equals` rules on strings.
        return .string(String(decoding: payload, as: UTF8.self).trimmingWhitespace())
    }

    /// The field's value when it has the type the rule needs (`missingField`'s name is filled in by the caller).
    static func check(_ found: JSONValue?, core: RuleCore) -> Result<JSONValue, ReadingProblem> {
        guard let value = found else { return .failure(.missingField("")) }
        switch core.valueType {
        case .number:
            guard case .number = value else { return .failure(.notANumber) }
        case .string:
            guard case .string = value else { return .failure(.typeMismatch) }
        case .bool:
            guard case .bool = value else { return .failure(.typeMismatch) }
        case .any:
            break
        }
        return .success(value)
    }

    /// Whether the condition holds: `equals` compares with the rule's value (kept in the full rule, not the
    /// core); the thresholds are `RuleCore.holds`.
    static func holds(_ core: RuleCore, rule: Rule, value: JSONValue, firing: Bool) -> Bool {
        if case .equals(let expected) = rule.condition { return value == expected }
        guard case .number(let number) = value else { return false }
        return core.holds(number: number, firing: firing)
    }

    private func labels(of instance: Instance, rule: Rule) -> [Label] {
        zip(rule.topic.captureNames, instance.labels).map { Label(name: $0, value: $1) }
    }

    private func reasonText(
        _ instance: Instance,
        problem lastProblem: ReadingProblem?,
        rule: Rule,
        kind: TransitionKind
    ) -> String {
        if instance.stale, let stale = rule.staleMilliseconds {
            return kind == .fire ? "no reading for \(RuleDuration.format(stale)) (stale)" : "readings resumed"
        }
        if instance.lastReadingAt == nil
            || (lastProblem != nil && rule.onUnknown != .keep
                && kind == (rule.onUnknown == .fire ? .fire : .clear))
        {
            if let problem = lastProblem {
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

        // Laid out for size (100,000 instances are common): small fields first, times as Int64 with
        // `Int64.min` for "none" behind optional-typed accessors, the rare last problem in a side table.

        /// Index of the rule in the rule set.
        var rule: Int32
        var timerGeneration: UInt32 = 0
        var phase = Phase.inactive
        /// Whether the condition holds, from the last usable reading (or the unknown policy).
        var holds = false
        var stale = false
        var flapping = false
        private var storedHoldsSince = Int64.min
        private var storedLastReadingAt = Int64.min
        private var storedStaleSince = Int64.min
        private var storedLastTransitionAt = Int64.min
        private var storedDeferredUntil = Int64.min
        private var storedTimerDue = Int64.min
        var lastValue: JSONValue?
        /// The captured values, in the rule's `captureNames` order.
        var labels: [String]
        var recentTransitions: [Int64] = []

        var holdsSince: Int64? {
            get { Instance.optional(storedHoldsSince) }
            set { storedHoldsSince = newValue ?? .min }
        }
        var lastReadingAt: Int64? {
            get { Instance.optional(storedLastReadingAt) }
            set { storedLastReadingAt = newValue ?? .min }
        }
        /// What `stale` counts from: the last usable reading; before any, the instance's first reading
        /// (a sensor that only ever sent garbage is as broken as a silent one); after a restart, the restart.
        var staleSince: Int64? {
            get { Instance.optional(storedStaleSince) }
            set { storedStaleSince = newValue ?? .min }
        }
        var lastTransitionAt: Int64? {
            get { Instance.optional(storedLastTransitionAt) }
            set { storedLastTransitionAt = newValue ?? .min }
        }
        var deferredUntil: Int64? {
            get { Instance.optional(storedDeferredUntil) }
            set { storedDeferredUntil = newValue ?? .min }
        }
        var timerDue: Int64? {
            get { Instance.optional(storedTimerDue) }
            set { storedTimerDue = newValue ?? .min }
        }

        @inline(__always)
        private static func optional(_ value: Int64) -> Int64? { value == .min ? nil : value }

        init(rule: Int32, labels: [String]) {
            self.rule = rule
            self.labels = labels
        }

        /// Takes in a usable reading's value.
        mutating func observe(_ value: JSONValue, holds: Bool, at time: Int64) {
            lastValue = value
            lastReadingAt = time
            staleSince = time
            stale = false
            self.holds = holds
            if holds, holdsSince == nil { holdsSince = time }
            if !holds { holdsSince = nil }
        }

        /// Takes in a reading the rule could not use, as the rule's `on_unknown` says (the problem itself
        /// is kept in the evaluator's `lastProblems`).
        mutating func observeUnusable(policy: Rule.UnknownPolicy, at time: Int64) {
            if staleSince == nil { staleSince = time }
            switch policy {
            case .keep: break
            case .fire:
                holds = true
                if holdsSince == nil { holdsSince = time }
            case .clear:
                holds = false
                holdsSince = nil
            }
        }
    }

    /// What one topic feeds, and the last `seq` its sensor sent.
    struct Route: Sendable {
        var lastSequence: Int64 = .min
        /// nil until resolved against the current rule set.
        var resolution: Resolution?
    }

    /// The instances a topic feeds under the current rule set and the payload fields they read
    /// (a class: handing it out per reading costs one retain, not one per array).
    final class Resolution: Sendable {
        /// Empty when no rule matches the topic.
        let targets: [RouteTarget]
        /// The distinct fields read (indexes into `RuleSet.fields`); a target's `field` is a position here.
        let fields: [Int]
        /// `seq`'s key range, then each field's, for `PayloadScanner`; nil when a field is a dotted path.
        let keyRanges: [Range<Int>]?

        init(targets: [RouteTarget], fields: [Int], keyRanges: [Range<Int>]?) {
            self.targets = targets
            self.fields = fields
            self.keyRanges = keyRanges
        }
    }

    /// One rule instance a topic feeds; `slot` is -1 when a captured value is unsafe (reported per reading).
    struct RouteTarget: Sendable {
        var rule: Int32
        var slot: Int32
        /// Position of the rule's field in the route's `fields`.
        var field: Int32
    }

    /// What the state machine changes besides the instance itself.
    struct Effects: Sendable {
        var timers = TimerHeap()
        /// Slots whose phase or last transition changed, for `takeChangedInstances()`.
        var changed: [Int32] = []
        var tracksChanges = false
    }
}

/// Timers by due time; entries whose generation is outdated are skipped when popped.
struct TimerHeap: Sendable {
    struct Entry: Sendable, Comparable {
        var due: Int64
        var rule: Int32
        var slot: Int32
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
