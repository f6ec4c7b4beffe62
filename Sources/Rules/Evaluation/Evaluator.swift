import FileFormats
import HeapModule

/// The rules applied to readings and to the clock, as a reducer: `process(_:into:)` and `advance(to:into:)` take
/// a reading or a time and append what happened (transitions, actions, problems) to an events list. Pure: no
/// clock, socket or file; the same inputs give the same events, which is what `replay`, `test` and the live engine
/// share.
public struct Evaluator: Sendable {
    public internal(set) var ruleSet: RuleSet
    /// The latest time seen.
    public internal(set) var now: Int64 = .min
    /// Every instance, addressed by slot. Slots never move until the rules are replaced, so readings,
    /// timers and change tracking refer to instances by a plain integer and mutate them in place.
    var instances: ContiguousArray<Instance> = []
    /// Every instance's slot by rule and captured values.
    var instanceIndex = InstanceIndex()
    /// Per topic seen: the instances it feeds (resolved once per rule set) and its last `seq`.
    var routes = RouteTable()
    /// Every resolution of the current rule set, by index (routes refer to them); their parts are ranges of
    /// the three arrays after it.
    var resolutions: ContiguousArray<Resolution> = []
    var resolvedTargets: ContiguousArray<RouteTarget> = []
    var resolvedFields: ContiguousArray<Int> = []
    var resolvedKeyRanges: ContiguousArray<Range<Int>> = []
    /// Resolutions that many topics share, by what they hold (see `shared(_:)`).
    var sharedResolutions: [ResolutionShape: Int32] = [:]
    var effects = Effects()
    var matchBuffer: [Int] = []
    /// The last unusable reading's problem per slot (rare, so not in every instance), for reasons.
    var lastProblems: [Int32: ReadingProblem] = [:]
    /// The reason of each instance's last transition, by slot (for `instanceReports`).
    var lastReasons: [Int32: String] = [:]
    /// When each deferred transition may happen, by slot (read only while the instance's `isDeferred` is set).
    var deferrals: [Int32: Int64] = [:]
    /// A combined rule's instance: the state slot of each leaf, in leaf order; a group's: its members' (absent
    /// for a single condition), by slot.
    var instanceInputs: [Int32: [Int32]] = [:]
    /// The times of the last transitions of instances whose rule has `max_transitions`, by slot, oldest first
    /// (rare, so not in every instance).
    var recentTransitions: [Int32: [Int64]] = [:]
    /// The states of combined rules' leaves and groups' members, addressed by slot like instances.
    var conditions: ContiguousArray<ConditionState> = []
    /// Shared leaves' and members' states by rule, leaf and captured values.
    var conditionSlots: [ConditionKey: Int32] = [:]
    /// The instances that read each shared leaf's state.
    var sharedReaders: [Int32: [Int32]] = [:]
    /// The last unusable reading's problem per condition slot.
    var conditionProblems: [Int32: ReadingProblem] = [:]
    /// Condition slots the current reading updated, whose instances are stepped once it is applied.
    var evaluatedConditions: [Int32] = []
    /// Windows of single-condition instances, by instance slot.
    var instanceWindows: [Int32: WindowState] = [:]
    /// Windows of leaves and members, by condition slot.
    var conditionWindows: [Int32: WindowState] = [:]
    /// `keep_firing_for` and flap detection state of clocked rules' instances, by slot.
    var clockStates: [Int32: ClockState] = [:]
    /// Per rule with a schedule: whether it is active now, and until when.
    var scheduleSpans: [Int32: Rule.Schedule.Span] = [:]
    /// Readings that reached at least one rule instance (not duplicates, not on unmatched topics).
    public private(set) var evaluatedReadingCount = 0
    /// The `seq` of the reading `process` just evaluated, nil when it had none or was dropped
    /// (what `--state-dir` writes down, so a redelivery after a restart is known as a duplicate).
    public private(set) var lastAcceptedSequence: Int64?
    /// The current reading's `seq` and fields, by position in its route (reused: no allocation per reading).
    var fieldValues: [JSONValue?] = []

    /// Whether to remember changed instances for `takeChangedInstances()` (for `--state-dir`).
    public var tracksChanges: Bool {
        get { effects.tracksChanges }
        set { effects.tracksChanges = newValue }
    }

    /// Creates an evaluator with no instances.
    public init(ruleSet: RuleSet) {
        self.ruleSet = ruleSet
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
        let routeIndex: Int
        if let known = routes.index(of: reading.topic) {
            routeIndex = known
        } else {
            routeIndex = routes.insert(reading.topic, route: Route())
        }
        if routes[route: routeIndex].resolution == Route.unresolved {
            let (resolution, slotBase) = resolve(topic: reading.topic)
            routes[route: routeIndex].resolution = resolution
            routes[route: routeIndex].slotBase = slotBase
        }
        let route = routes[route: routeIndex]
        let resolution = resolutions[Int(route.resolution)]
        guard !resolution.targets.isEmpty else { return }
        let sequence = readFields(of: reading.payload, for: resolution)
        if let sequence {
            guard
                Evaluator.record(
                    sequence,
                    after: &routes[route: routeIndex].lastSequence,
                    topic: reading.topic,
                    at: time,
                    into: &events
                )
            else { return }
            lastAcceptedSequence = sequence
        }
        evaluatedReadingCount &+= 1
        let targets = Int(resolution.targets.lowerBound)..<Int(resolution.targets.upperBound)
        for position in targets {
            // Read from `resolvedTargets` each time (not a copy of the array held across the loop: no retain).
            var target = resolvedTargets[position]
            guard target.leaf >= 0 else {
                if target.slot >= 0 { target.slot &+= route.slotBase }
                evaluate(topic: reading.topic, target: target, at: time, into: &events)
                continue
            }
            guard target.slot >= 0 else {
                reportUnsafeCapture(topic: reading.topic, target: target, at: time, into: &events)
                continue
            }
            evaluateCondition(topic: reading.topic, target: target, at: time, into: &events)
            // A rule's leaves on this topic are all applied before its instances move.
            let next = position + 1
            if next == targets.upperBound || resolvedTargets[next].rule != target.rule {
                stepDependents(at: time, into: &events)
            }
        }
    }

    /// Moves the clock to `time`, firing every timer due at or before it in time order.
    public mutating func advance(to time: Int64, into events: inout [EvaluationEvent]) {
        while let entry = effects.timers.popIfDue(atOrBefore: time) {
            let slot = Int(entry.slot)
            guard instances[slot].timerGeneration == entry.generation, instances[slot].timerDue == entry.due else {
                continue
            }
            now = max(now, entry.due)
            guard ruleSet.cores[Int(entry.rule)].isSingleCondition else {
                recombine(slot: slot, at: entry.due, into: &events)
                continue
            }
            if ruleSet.cores[Int(entry.rule)].usesClock { refreshWindow(instance: slot, at: entry.due) }
            if let stale = ruleSet.cores[Int(entry.rule)].staleMilliseconds, let last = instances[slot].staleSince,
                entry.due >= last + stale
            {
                instances[slot].stale = true
            }
            step(slot: slot, at: entry.due, into: &events)
        }
        now = max(now, time)
    }

    static func levels(of topic: String) -> [Substring] {
        TopicIndex.levels(of: topic)
    }

    /// The instances a topic feeds (created inactive) and the fields they read, with the slot its single
    /// conditions' targets count from (see `shared(_:)`).
    mutating func resolve(topic: String) -> (resolution: Int32, slotBase: Int32) {
        let levels = Evaluator.levels(of: topic)
        matchBuffer.removeAll(keepingCapacity: true)
        ruleSet.index.matches(levels, into: &matchBuffer)
        var targets: [RouteTarget] = []
        var fields: [Int] = []
        var keyRanges = [RuleSet.sequenceKeyRange]
        var previousCapture: [String] = []
        for inputIndex in matchBuffer {
            let input = ruleSet.inputs[inputIndex]
            let ruleIndex = Int(input.rule)
            let rule = ruleSet.rules[ruleIndex]
            let pattern = rule.leaves[Int(input.leaf)].topic
            guard var captured = pattern.captures(in: levels) else { continue }
            // Rules on the same topic capture the same values: share one array among their instances.
            if captured == previousCapture { captured = previousCapture } else { previousCapture = captured }
            let fieldIndex = ruleSet.conditionCores[ruleIndex][Int(input.leaf)].fieldIndex
            let position =
                fields.firstIndex(of: fieldIndex)
                ?? {
                    fields.append(fieldIndex)
                    if let range = ruleSet.keyRanges[fieldIndex] { keyRanges.append(range) }
                    return fields.count - 1
                }()
            let safe = captured.allSatisfy(TopicPattern.isSafeCaptureValue)
            if rule.isSingleCondition {
                let slot = safe ? self.slot(rule: ruleIndex, labels: captured) : -1
                targets.append(RouteTarget(rule: Int32(ruleIndex), slot: slot, field: Int32(position), leaf: -1))
            } else {
                let slot = safe ? resolveCondition(rule: ruleIndex, leaf: Int(input.leaf), captured: captured) : -1
                targets.append(
                    RouteTarget(rule: Int32(ruleIndex), slot: slot, field: Int32(position), leaf: input.leaf)
                )
            }
        }
        return shared(
            ResolutionShape(
                targets: targets,
                fields: fields,
                keyRanges: keyRanges.count == fields.count + 1 ? keyRanges : nil
            )
        )
    }

    /// Topics of one shape (`site/dev-1/temperature`, `site/dev-2/temperature`, ...) usually feed the same rules
    /// through instances made together, whose slots follow each other: such a resolution is kept once, with
    /// its single conditions' slots counted from the topic's first one, so 10,000 sensors cost 10,000 route
    /// entries and not 10,000 target lists (topics no rule matches share one too). Any other resolution (a
    /// leaf's state, slots out of order) stays the topic's own, with its slots as they are.
    mutating func shared(_ shape: ResolutionShape) -> (resolution: Int32, slotBase: Int32) {
        let slots = shape.targets.lazy.filter { $0.slot >= 0 }.map(\.slot)
        let base = slots.first ?? 0
        guard shape.targets.allSatisfy({ $0.leaf < 0 }), slots.enumerated().allSatisfy({ $1 == base + Int32($0) })
        else { return (addResolution(shape), 0) }
        var relative = shape
        for index in relative.targets.indices where relative.targets[index].slot >= 0 {
            relative.targets[index].slot -= base
        }
        if let known = sharedResolutions[relative] { return (known, base) }
        let made = addResolution(relative)
        sharedResolutions[relative] = made
        return (made, base)
    }

    /// Appends a resolution's parts to the flat arrays; returns its index in `resolutions`.
    mutating func addResolution(_ shape: ResolutionShape) -> Int32 {
        func appended<Element>(_ elements: [Element], to array: inout ContiguousArray<Element>) -> Range<Int32> {
            let start = Int32(array.count)
            array.append(contentsOf: elements)
            return start..<Int32(array.count)
        }
        resolutions.append(
            Resolution(
                targets: appended(shape.targets, to: &resolvedTargets),
                fields: appended(shape.fields, to: &resolvedFields),
                keyRanges: shape.keyRanges.map { appended($0, to: &resolvedKeyRanges) }
            )
        )
        return Int32(resolutions.count - 1)
    }

    /// Forgets every resolution (the rules changed); routes keep their `seq` memory and resolve again.
    mutating func clearResolutions() {
        for index in 0..<routes.count { routes[route: index].resolution = Route.unresolved }
        resolutions = []
        resolvedTargets = []
        resolvedFields = []
        resolvedKeyRanges = []
        sharedResolutions = [:]
    }

    /// Fills `fieldValues` (`seq`, then the route's fields) from a payload; returns its integral `seq`.
    mutating func readFields(of payload: [UInt8], for resolution: Resolution) -> Int64? {
        let count = resolution.fields.count + 1
        if fieldValues.count < count {
            fieldValues.append(contentsOf: repeatElement(nil, count: count - fieldValues.count))
        }
        if let keyRanges = resolution.keyRanges {
            let shape = payload.withUnsafeBufferPointer { bytes in
                ruleSet.keyBytes.withUnsafeBufferPointer { keyBytes in
                    resolvedKeyRanges.withUnsafeBufferPointer { ranges in
                        PayloadScanner.scan(
                            bytes,
                            keyBytes: keyBytes,
                            keyRanges: UnsafeBufferPointer(
                                rebasing: ranges[Int(keyRanges.lowerBound)..<Int(keyRanges.upperBound)]
                            ),
                            into: &fieldValues
                        )
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
            for position in 0..<resolution.fields.count {
                let fieldIndex = resolvedFields[Int(resolution.fields.lowerBound) + position]
                fieldValues[position + 1] = decoded.value(at: ruleSet.fields[fieldIndex])
            }
        default:
            fieldValues[0] = nil
            for position in 1..<count { fieldValues[position] = decoded }
        }
        return Evaluator.sequenceNumber(fieldValues[0])
    }

    /// A combined or grouped instance's condition slots (empty for a single condition).
    @inline(__always)
    func inputs(of slot: Int) -> [Int32] { instanceInputs[Int32(slot)] ?? [] }

    /// The slot of an instance, created inactive when it does not exist yet.
    mutating func slot(rule ruleIndex: Int, labels: [String]) -> Int32 {
        if let slot = instanceIndex.slot(rule: Int32(ruleIndex), labels: labels, in: instances) { return slot }
        let slot = Int32(instances.count)
        instances.append(Instance(rule: Int32(ruleIndex), labels: labels))
        instanceIndex.insert(slot: slot, in: instances)
        return slot
    }

    /// Applies one reading (its fields in `fieldValues`) to one instance.
    mutating func evaluate(
        topic: String,
        target: RouteTarget,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) {
        let ruleIndex = Int(target.rule)
        guard target.slot >= 0 else {
            reportUnsafeCapture(topic: topic, target: target, at: time, into: &events)
            return
        }
        let slot = Int(target.slot)
        // The common case, a number for a threshold rule: a comparison, without building a Result.
        let check = ruleSet.numericChecks[ruleIndex]
        if let comparison = check.comparison, case .number(let number)? = fieldValues[Int(target.field) + 1] {
            let settled = instances[slot].observe(number: number, comparison: comparison, at: time)
            // Most readings leave an instance where it is, and then `step` has nothing to do.
            if settled, !check.stepsEveryReading { return }
            step(slot: slot, at: time, into: &events)
            return
        }
        let core = ruleSet.cores[ruleIndex]
        if core.condition.hasWindow {
            evaluateWindowed(topic: topic, target: target, at: time, into: &events)
            return
        }
        switch Evaluator.check(fieldValues[Int(target.field) + 1], core: core) {
        case .success(let value):
            let holds = core.condition.holds(
                value,
                expected: ruleSet.equalsValues[ruleIndex][0],
                latched: instances[slot].isFiring
            )
            instances[slot].observe(value, holds: holds, at: time)
        case .failure(let found):
            let problem = report(found, field: core.fieldIndex, rule: ruleIndex, topic: topic, at: time, into: &events)
            instances[slot].observeUnusable(policy: core.onUnknown, at: time)
            lastProblems[target.slot] = problem
        }
        step(slot: slot, at: time, into: &events)
    }

    /// Reports an unusable reading (a missing field named by its path) and returns the problem. (`mutating`
    /// only so that the mutating evaluators call it without copying the evaluator.)
    mutating func report(
        _ problem: ReadingProblem,
        field: Int,
        rule: some BinaryInteger,
        topic: String,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) -> ReadingProblem {
        var problem = problem
        if case .missingField = problem { problem = .missingField(ruleSet.fields[field].joined(separator: ".")) }
        events.append(.unusable(ruleID: ruleSet.rules[Int(rule)].id, topic: topic, problem: problem, timestamp: time))
        return problem
    }

    /// Reports a reading whose captured topic level is unsafe (it never reaches a topic).
    func reportUnsafeCapture(topic: String, target: RouteTarget, at time: Int64, into events: inout [EvaluationEvent]) {
        let rule = ruleSet.rules[Int(target.rule)]
        let pattern = rule.leaves[Int(max(target.leaf, 0))].topic
        let captured = pattern.captures(in: Evaluator.levels(of: topic)) ?? []
        if let unsafe = zip(pattern.captureNames, captured).first(where: { !TopicPattern.isSafeCaptureValue($1) }) {
            events.append(
                .unusable(
                    ruleID: rule.id,
                    topic: topic,
                    problem: .unsafeCapture(name: unsafe.0, value: unsafe.1),
                    timestamp: time
                )
            )
        }
    }

    /// An object payload's `seq`, when it is an integral number.
    static func sequenceNumber(_ value: JSONValue?) -> Int64? {
        guard case .number(let number)? = value, number == number.rounded(), abs(number) < 9e15 else { return nil }
        return Int64(number)
    }

    /// Compares `sequence` with the topic's `last` (updated in place); false when the reading is a duplicate.
    ///
    /// A `seq` that goes back to 0 or 1, or more than 1,000 below the last, is a sensor that restarted:
    /// counting starts over. A duplicate is a redelivery (QoS 1 after a reconnect) or a device repeating itself.
    static func record(
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

}
