import FileFormats

// Combined (`all`/`any`/`not`) and grouped (`group_by`/`match`) rules: each condition of an instance keeps
// its own state (a leaf of a combination, a member of a group), shared by every instance that joins it;
// the instance takes its truth from them and runs the same state machine as a single condition.

/// A three-valued truth (Kleene): what a condition is when it cannot be known is never guessed.
public enum Truth: String, Hashable, Sendable, CaseIterable {
    case `true`, `false`, unknown

    /// `all`: false when any is false, true when all are true, otherwise unknown.
    public static func all(_ values: some Sequence<Truth>) -> Truth {
        var result = Truth.true
        for value in values {
            if value == .false { return .false }
            if value == .unknown { result = .unknown }
        }
        return result
    }

    /// `any`: true when any is true, false when all are false, otherwise unknown.
    public static func any(_ values: some Sequence<Truth>) -> Truth {
        var result = Truth.false
        for value in values {
            if value == .true { return .true }
            if value == .unknown { result = .unknown }
        }
        return result
    }

    /// `not`: swaps true and false, keeps unknown.
    public var negated: Truth {
        switch self {
        case .true: .false
        case .false: .true
        case .unknown: .unknown
        }
    }

    /// A vote over members that hold (`holding`), may hold (`unknown`) and do not (the rest of `total`).
    public static func vote(_ match: Rule.Match, holding: Int, unknown: Int, total: Int) -> Truth {
        switch match {
        case .any: return holding > 0 ? .true : unknown > 0 ? .unknown : .false
        case .all: return holding == total && total > 0 ? .true : holding + unknown == total ? .unknown : .false
        case .atLeast(let count):
            return holding >= count ? .true : holding + unknown >= count ? .unknown : .false
        }
    }
}

extension Evaluator {
    /// The state of one condition for one set of its captured values: a leaf (shared by every instance
    /// whose labels it captures) or a member of a group.
    struct ConditionState: Sendable {
        var rule: Int32
        var leaf: Int32
        /// Whether it held at its last usable reading, with hysteresis: a leaf latches from the reading that
        /// passes its threshold until one reaches its clear level.
        var latched = false
        /// Whether its last reading was usable (false before the first).
        var usable = false
        /// When its last usable reading arrived, or the restart it was restored at: `stale` counts from it.
        var storedFreshSince = Int64.min
        var storedLastReadingAt = Int64.min
        var lastValue: JSONValue?
        /// The values its topic captured, in its topic's `captureNames` order.
        var labels: [String]
        /// The instances that read it.
        var dependents: [Int32] = []

        var freshSince: Int64? {
            get { Instance.optional(storedFreshSince) }
            set { storedFreshSince = newValue ?? .min }
        }
        var lastReadingAt: Int64? {
            get { Instance.optional(storedLastReadingAt) }
            set { storedLastReadingAt = newValue ?? .min }
        }

        /// Its truth at `time`: unknown before its first usable reading, after an unusable one and once its
        /// `stale` passed without a usable reading.
        func truth(at time: Int64, stale: Int64?) -> Truth {
            guard usable else { return .unknown }
            if let stale, let since = freshSince, time >= since + stale { return .unknown }
            return latched ? .true : .false
        }
    }

    /// Where a condition state is found: its rule, its leaf and its captured values.
    struct ConditionKey: Hashable, Sendable {
        var rule: Int32
        var leaf: Int32
        var labels: [String]
    }

    /// The slot of a condition state, created unknown when it does not exist yet; `created` tells which.
    mutating func conditionSlot(rule: Int, leaf: Int, labels: [String]) -> (slot: Int32, created: Bool) {
        let key = ConditionKey(rule: Int32(rule), leaf: Int32(leaf), labels: labels)
        if let slot = conditionSlots[key] { return (slot, false) }
        let slot = Int32(conditions.count)
        conditions.append(ConditionState(rule: Int32(rule), leaf: Int32(leaf), labels: labels))
        conditionSlots[key] = slot
        return (slot, true)
    }

    /// Resolves a topic matched by a combined or grouped rule's leaf: the condition state it feeds, and the
    /// instance it creates (a leaf that captures every name of the rule, or any member of a group).
    mutating func resolveCondition(rule ruleIndex: Int, leaf leafIndex: Int, captured: [String]) -> Int32 {
        let rule = ruleSet.rules[ruleIndex]
        let leaf = rule.leaves[leafIndex]
        let (state, created) = conditionSlot(rule: ruleIndex, leaf: leafIndex, labels: captured)
        if let grouping = rule.grouping {
            let labels = grouping.captureNames.map { name in
                captured[leaf.topic.captureNames.firstIndex(of: name)!]
            }
            let instance = combinedSlot(rule: ruleIndex, labels: labels)
            if created {
                conditions[Int(state)].dependents.append(instance)
                instances[Int(instance)].inputs.append(state)
            }
        } else if leaf.topic.captureNames.count == rule.captureNames.count {
            let labels = rule.captureNames.map { captured[leaf.topic.captureNames.firstIndex(of: $0)!] }
            _ = combinedSlot(rule: ruleIndex, labels: labels)
        }
        return state
    }

    /// The slot of a combined or grouped rule's instance, created inactive when it does not exist yet; a
    /// combination's instance is linked to the state of each of its leaves (shared leaves included).
    mutating func combinedSlot(rule ruleIndex: Int, labels: [String]) -> Int32 {
        if let slot = slotsByLabels[ruleIndex][labels] { return slot }
        let slot = self.slot(rule: ruleIndex, labels: labels)
        let rule = ruleSet.rules[ruleIndex]
        guard rule.grouping == nil else { return slot }
        var inputs: [Int32] = []
        for (leafIndex, leaf) in rule.leaves.enumerated() {
            let leafLabels = leaf.topic.captureNames.map { labels[rule.captureNames.firstIndex(of: $0)!] }
            let state = conditionSlot(rule: ruleIndex, leaf: leafIndex, labels: leafLabels).slot
            conditions[Int(state)].dependents.append(slot)
            inputs.append(state)
        }
        instances[Int(slot)].inputs = inputs
        return slot
    }

    /// Applies one reading (its field in `fieldValues`) to one condition state; reports an unusable one.
    /// The instances that read the state are stepped afterwards by `stepDependents`.
    mutating func evaluateCondition(
        topic: String,
        target: RouteTarget,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) {
        let state = Int(target.slot)
        let core = ruleSet.conditionCores[Int(target.rule)][Int(target.leaf)]
        evaluatedConditions.append(target.slot)
        switch Evaluator.check(fieldValues[Int(target.field) + 1], core: core) {
        case .success(let value):
            conditions[state].latched = core.holds(value, latched: conditions[state].latched)
            conditions[state].usable = true
            conditions[state].lastValue = value
            conditions[state].lastReadingAt = time
            conditions[state].freshSince = time
            conditionProblems[target.slot] = nil
            for dependent in conditions[state].dependents {
                instances[Int(dependent)].lastValue = value
                instances[Int(dependent)].lastReadingAt = time
            }
        case .failure(var problem):
            if case .missingField = problem {
                problem = .missingField(ruleSet.fields[core.fieldIndex].joined(separator: "."))
            }
            events.append(
                .unusable(ruleID: ruleSet.rules[Int(target.rule)].id, topic: topic, problem: problem, timestamp: time)
            )
            conditions[state].usable = false
            conditions[state].lastReadingAt = time
            conditionProblems[target.slot] = problem
        }
    }

    /// Steps, once each and in order, every instance that reads a condition state evaluated since the last
    /// call: a reading that feeds two leaves of one instance moves it once, with both leaves up to date.
    mutating func stepDependents(at time: Int64, into events: inout [EvaluationEvent]) {
        guard !evaluatedConditions.isEmpty else { return }
        defer { evaluatedConditions.removeAll(keepingCapacity: true) }
        if evaluatedConditions.count == 1 {
            for dependent in conditions[Int(evaluatedConditions[0])].dependents {
                recombine(slot: Int(dependent), at: time, into: &events)
            }
            return
        }
        var seen = Set<Int32>()
        for state in evaluatedConditions {
            for dependent in conditions[Int(state)].dependents where seen.insert(dependent).inserted {
                recombine(slot: Int(dependent), at: time, into: &events)
            }
        }
    }

    /// Takes a combined or grouped instance's truth at `time` from its conditions, through `on_unknown`,
    /// and steps it.
    mutating func recombine(slot: Int, at time: Int64, into events: inout [EvaluationEvent]) {
        let ruleIndex = Int(instances[slot].rule)
        let truth = self.truth(ofInstance: slot, at: time)
        switch (truth, ruleSet.cores[ruleIndex].onUnknown) {
        case (.true, _), (.unknown, .fire):
            if !instances[slot].holds {
                instances[slot].holds = true
                instances[slot].holdsSince = time
            }
        case (.false, _), (.unknown, .clear):
            instances[slot].holds = false
            instances[slot].holdsSince = nil
        case (.unknown, .keep):
            break  // as if the reading had not arrived
        }
        instances[slot].conditionDeadline = nextConditionDeadline(ofInstance: slot, after: time)
        step(slot: slot, at: time, into: &events)
    }

    /// A combined or grouped instance's truth at `time`.
    func truth(ofInstance slot: Int, at time: Int64) -> Truth {
        let instance = instances[slot]
        let ruleIndex = Int(instance.rule)
        let rule = ruleSet.rules[ruleIndex]
        if let grouping = rule.grouping {
            let (holding, unknown) = memberCounts(instance, at: time)
            return Truth.vote(grouping.match, holding: holding, unknown: unknown, total: instance.inputs.count)
        }
        guard let combination = rule.combination else { return instance.holds ? .true : .false }
        return truth(of: combination, inputs: instance.inputs, rule: ruleIndex, at: time)
    }

    /// How many members of a group hold, and how many are unknown, at `time`.
    func memberCounts(_ instance: Instance, at time: Int64) -> (holding: Int, unknown: Int) {
        let stale = ruleSet.conditionCores[Int(instance.rule)][0].staleMilliseconds
        var holding = 0
        var unknown = 0
        for member in instance.inputs {
            switch conditions[Int(member)].truth(at: time, stale: stale) {
            case .true: holding += 1
            case .unknown: unknown += 1
            case .false: break
            }
        }
        return (holding, unknown)
    }

    func truth(of combination: Rule.Combination, inputs: [Int32], rule: Int, at time: Int64) -> Truth {
        switch combination {
        case .leaf(let leaf):
            return conditions[Int(inputs[leaf])].truth(
                at: time,
                stale: ruleSet.conditionCores[rule][leaf].staleMilliseconds
            )
        case .all(let elements):
            return Truth.all(elements.lazy.map { truth(of: $0, inputs: inputs, rule: rule, at: time) })
        case .any(let elements):
            return Truth.any(elements.lazy.map { truth(of: $0, inputs: inputs, rule: rule, at: time) })
        case .not(let element):
            return truth(of: element, inputs: inputs, rule: rule, at: time).negated
        }
    }

    /// The earliest time after `time` at which one of an instance's conditions goes stale.
    func nextConditionDeadline(ofInstance slot: Int, after time: Int64) -> Int64? {
        let instance = instances[slot]
        let rule = Int(instance.rule)
        let grouped = ruleSet.rules[rule].grouping != nil
        var earliest: Int64?
        for (position, state) in instance.inputs.enumerated() {
            let condition = conditions[Int(state)]
            guard condition.usable, let since = condition.freshSince,
                let stale = ruleSet.conditionCores[rule][grouped ? 0 : position].staleMilliseconds,
                since + stale > time
            else { continue }
            earliest = min(earliest ?? .max, since + stale)
        }
        return earliest
    }

    /// What people see of each condition of an instance: its value, its truth and why it is unknown.
    func conditionReports(ofInstance slot: Int, at time: Int64) -> [ConditionReport] {
        let instance = instances[slot]
        let ruleIndex = Int(instance.rule)
        let rule = ruleSet.rules[ruleIndex]
        guard !rule.isSingleCondition else { return [] }
        return instance.inputs.enumerated().map { position, state in
            let condition = conditions[Int(state)]
            let leafIndex = Int(condition.leaf)
            let leaf = rule.leaves[leafIndex]
            let stale = ruleSet.conditionCores[ruleIndex][leafIndex].staleMilliseconds
            let truth = condition.truth(at: time, stale: stale)
            var why: String?
            if truth == .unknown {
                if condition.lastReadingAt == nil {
                    why = "no reading yet"
                } else if !condition.usable {
                    why = "unusable reading: \(conditionProblems[state].map(String.init(describing:)) ?? "unknown")"
                } else if let stale {
                    why = "stale: no reading for \(RuleDuration.format(stale))"
                }
            }
            let member =
                rule.grouping.map { grouping in
                    zip(leaf.topic.captureNames, condition.labels).filter { !grouping.captureNames.contains($0.0) }
                        .map(\.1).joined(separator: "/")
                }
            return ConditionReport(
                name: leaf.name ?? member,
                topic: Evaluator.topic(of: leaf.topic, labels: condition.labels),
                labels: zip(leaf.topic.captureNames, condition.labels).map { Label(name: $0, value: $1) },
                isMember: rule.grouping != nil,
                value: condition.lastValue,
                lastReadingAt: condition.lastReadingAt,
                truth: truth,
                unknownBecause: why,
                position: position
            )
        }
    }

    /// A pattern with its captures filled in (`+` and `#` stay as they are).
    static func topic(of pattern: TopicPattern, labels: [String]) -> String {
        var captured = labels.makeIterator()
        return pattern.levels.map { level in
            switch level {
            case .literal(let text): text
            case .capture: captured.next() ?? "+"
            case .anyLevel: "+"
            case .remainingLevels: "#"
            }
        }.joined(separator: "/")
    }
}

/// One condition of a combined rule's instance (a leaf) or of a group (a member), as people look at it.
public struct ConditionReport: Sendable, Hashable {
    /// The leaf's `name:`, if it has one; a member's captured values that its group does not share
    /// (`p1` for `sensors/{tank}/{probe}/temperature` grouped by `tank`), joined by `/`.
    public var name: String?
    /// Its topic with the captured values filled in.
    public var topic: String
    /// What its topic captured.
    public var labels: [Label]
    /// Whether it is a member of a group (rather than a leaf of a combination).
    public var isMember: Bool
    public var value: JSONValue?
    public var lastReadingAt: Int64?
    public var truth: Truth
    /// Why it is unknown: no reading yet, an unusable reading, or stale.
    public var unknownBecause: String?
    /// Its position among the instance's conditions (leaf order, or members in order of first reading).
    public var position: Int

    /// As a JSON object, keys in a stable order.
    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = []
        if let name { pairs.append(("name", .string(name))) }
        pairs += [
            ("topic", .string(topic)),
            ("labels", .object(labels.map { ($0.name, .string($0.value)) })),
            ("value", value ?? .null),
            ("last_reading_at", lastReadingAt.map { .number(Double($0)) } ?? .null),
            ("truth", .string(truth.rawValue)),
        ]
        if let unknownBecause { pairs.append(("unknown_because", .string(unknownBecause))) }
        return .object(pairs)
    }

    /// `name` or `topic`, `= value`, and the truth: one line of an audit or a reason.
    public var summary: String {
        let value = value.map { value -> String in
            if case .number(let number) = value { return JSONValue.format(number) }
            return value.jsonText
        }
        return "\(name ?? topic)=\(value ?? "none") (\(unknownBecause.map { "unknown: \($0)" } ?? truth.rawValue))"
    }
}
