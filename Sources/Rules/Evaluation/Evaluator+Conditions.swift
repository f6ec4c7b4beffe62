import FileFormats

// Combined (`all`/`any`/`not`) and grouped (`group_by`/`match`) rules: each condition of an instance keeps
// its own state (a leaf of a combination, a member of a group), shared by every instance that joins it;
// the instance takes its truth from them and runs the same state machine as a single condition.

/// A three-valued truth (Kleene): what a condition is when it cannot be known is never guessed.
public enum Truth: String, Hashable, Sendable, CaseIterable {
    case `true`, `false`, unknown

    /// `all`: false when any is false, true when all are true, otherwise unknown.
    public static func all(_ values: some Sequence<Truth>) -> Truth {
        values.reduce(.true, and)
    }

    /// `any`: true when any is true, false when all are false, otherwise unknown.
    public static func any(_ values: some Sequence<Truth>) -> Truth {
        values.reduce(.false, or)
    }

    /// Kleene's `and` of two values.
    @inline(__always)
    static func and(_ left: Truth, _ right: Truth) -> Truth {
        left == .false || right == .false ? .false : left == .true && right == .true ? .true : .unknown
    }

    /// Kleene's `or` of two values.
    @inline(__always)
    static func or(_ left: Truth, _ right: Truth) -> Truth {
        left == .true || right == .true ? .true : left == .false && right == .false ? .false : .unknown
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
    /// The state of one condition for one set of its captured values: a leaf of one instance (a leaf that
    /// captures every name of its rule), a leaf shared by every instance whose labels it captures, or a
    /// member of a group.
    struct ConditionState: Sendable {
        var rule: Int32
        var leaf: Int32
        /// The one instance that reads it; -1 for a shared leaf (its readers are in `sharedReaders`).
        var owner: Int32
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

    /// Where a shared leaf's or a member's state is found: its rule, its leaf and its captured values (a
    /// leaf that one instance owns is found through the instance).
    struct ConditionKey: Hashable, Sendable {
        var rule: Int32
        var leaf: Int32
        var labels: [String]
    }

    /// A new condition state's slot.
    mutating func appendCondition(rule: Int, leaf: Int, labels: [String], owner: Int32) -> Int32 {
        conditions.append(ConditionState(rule: Int32(rule), leaf: Int32(leaf), owner: owner, labels: labels))
        return Int32(conditions.count - 1)
    }

    /// The slot of a shared leaf's or a member's state, created unknown when it does not exist yet; `created`
    /// tells which.
    mutating func keyedCondition(rule: Int, leaf: Int, labels: [String], owner: Int32) -> (slot: Int32, created: Bool) {
        let key = ConditionKey(rule: Int32(rule), leaf: Int32(leaf), labels: labels)
        if let slot = conditionSlots[key] { return (slot, false) }
        let slot = appendCondition(rule: rule, leaf: leaf, labels: labels, owner: owner)
        conditionSlots[key] = slot
        return (slot, true)
    }

    /// Whether a leaf of a combination captures fewer names than its rule (shared by several instances).
    func isShared(rule ruleIndex: Int, leaf leafIndex: Int) -> Bool {
        let rule = ruleSet.rules[ruleIndex]
        return rule.grouping == nil && rule.leaves[leafIndex].topic.captureNames.count < rule.captureNames.count
    }

    /// Resolves a topic matched by a combined or grouped rule's leaf: the condition state it feeds, and the
    /// instance it creates (a leaf that captures every name of the rule, or any member of a group).
    mutating func resolveCondition(rule ruleIndex: Int, leaf leafIndex: Int, captured: [String]) -> Int32 {
        let rule = ruleSet.rules[ruleIndex]
        let leaf = rule.leaves[leafIndex]
        if let grouping = rule.grouping {
            let labels = grouping.captureNames.map { captured[leaf.topic.captureNames.firstIndex(of: $0)!] }
            let instance = combinedSlot(rule: ruleIndex, labels: labels)
            let (member, created) = keyedCondition(rule: ruleIndex, leaf: leafIndex, labels: captured, owner: instance)
            if created { instanceInputs[instance, default: []].append(member) }
            return member
        }
        if isShared(rule: ruleIndex, leaf: leafIndex) {
            return keyedCondition(rule: ruleIndex, leaf: leafIndex, labels: captured, owner: -1).slot
        }
        let labels =
            leaf.topic.captureNames == rule.captureNames
            ? captured : rule.captureNames.map { captured[leaf.topic.captureNames.firstIndex(of: $0)!] }
        let instance = combinedSlot(rule: ruleIndex, labels: labels)  // before `inputs(of:)` reads the table
        return inputs(of: Int(instance))[leafIndex]
    }

    /// The slot of a combined or grouped rule's instance, created inactive when it does not exist yet; a
    /// combination's instance gets a state for each leaf it owns and reads the shared ones.
    mutating func combinedSlot(rule ruleIndex: Int, labels: [String]) -> Int32 {
        if let slot = instanceIndex.slot(rule: Int32(ruleIndex), labels: labels, in: instances) { return slot }
        let slot = self.slot(rule: ruleIndex, labels: labels)
        let rule = ruleSet.rules[ruleIndex]
        guard rule.grouping == nil else { return slot }
        var inputs: [Int32] = []
        inputs.reserveCapacity(rule.leaves.count)
        for (leafIndex, leaf) in rule.leaves.enumerated() {
            let leafLabels =
                leaf.topic.captureNames == rule.captureNames
                ? labels : leaf.topic.captureNames.map { labels[rule.captureNames.firstIndex(of: $0)!] }
            if isShared(rule: ruleIndex, leaf: leafIndex) {
                let state = keyedCondition(rule: ruleIndex, leaf: leafIndex, labels: leafLabels, owner: -1).slot
                sharedReaders[state, default: []].append(slot)
                inputs.append(state)
            } else {
                inputs.append(appendCondition(rule: ruleIndex, leaf: leafIndex, labels: leafLabels, owner: slot))
            }
        }
        instanceInputs[slot] = inputs
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
        let (wasUsable, wasLatched) = (conditions[state].usable, conditions[state].latched)
        // The common case, a number for a threshold: a comparison, without building a Result.
        if let comparison = ruleSet.leafComparisons[Int(ruleSet.firstInputs[Int(target.rule)] + target.leaf)],
            case .number(let number)? = fieldValues[Int(target.field) + 1]
        {
            conditions[state].latched = comparison.holds(number: number, firing: wasLatched)
            observeUsable(.number(number), state: state, at: time)
        } else {
            let core = ruleSet.conditionCores[Int(target.rule)][Int(target.leaf)]
            if core.hasWindow {
                evaluateWindowedCondition(topic: topic, target: target, at: time, into: &events)
                return
            }
            switch Evaluator.check(fieldValues[Int(target.field) + 1], core: core) {
            case .success(let value):
                conditions[state].latched = core.holds(
                    value,
                    expected: core.comparesByEquality ? ruleSet.equalsValues[Int(target.rule)][Int(target.leaf)] : nil,
                    latched: wasLatched
                )
                observeUsable(value, state: state, at: time)
            case .failure(let found):
                let problem = report(
                    found,
                    field: core.fieldIndex,
                    rule: Int(target.rule),
                    topic: topic,
                    at: time,
                    into: &events
                )
                conditions[state].usable = false
                conditions[state].lastReadingAt = time
                conditionProblems[target.slot] = problem
            }
        }
        // A reading that leaves the leaf's truth as it was cannot move an instance (unless a leaf has a
        // `stale`, whose deadline every usable reading moves): a `for` that ends now fires by its timer.
        // (Only a leaf known before and after: an unknown one may belong to an instance just created, which
        // its other leaves can already decide.)
        let sameTruth = wasUsable && conditions[state].usable && conditions[state].latched == wasLatched
        if sameTruth, !ruleSet.hasStaleConditions[Int(target.rule)] { return }
        evaluatedConditions.append(target.slot)
    }

    /// Takes in a usable reading's value (its latched state is already updated): the state and the instances
    /// that read it remember the value and when it came.
    mutating func observeUsable(_ value: JSONValue, state: Int, at time: Int64) {
        let (owner, wasUsable) = conditions.withUnsafeMutableBufferPointer { conditions in
            let wasUsable = conditions[state].usable
            conditions[state].usable = true
            conditions[state].lastValue = value
            conditions[state].storedLastReadingAt = time
            conditions[state].storedFreshSince = time
            return (conditions[state].owner, wasUsable)
        }
        if !wasUsable { conditionProblems[Int32(state)] = nil }
        if owner >= 0 {
            instances.withUnsafeMutableBufferPointer { instances in
                instances[Int(owner)].lastValue = value
                instances[Int(owner)].storedLastReadingAt = time
            }
        } else {
            for reader in sharedReaders[Int32(state)] ?? [] {
                instances[Int(reader)].lastValue = value
                instances[Int(reader)].storedLastReadingAt = time
            }
        }
    }

    /// Steps, once each and in order, every instance that reads a condition state evaluated since the last
    /// call: a reading that feeds two leaves of one instance moves it once, with both leaves up to date.
    mutating func stepDependents(at time: Int64, into events: inout [EvaluationEvent]) {
        switch evaluatedConditions.count {
        case 0: return
        case 1:
            let state = evaluatedConditions[0]
            evaluatedConditions.removeLast()
            let owner = conditions[Int(state)].owner
            if owner >= 0 {
                recombine(slot: Int(owner), at: time, into: &events)
            } else {
                for reader in sharedReaders[state] ?? [] { recombine(slot: Int(reader), at: time, into: &events) }
            }
        default:
            var seen = Set<Int32>()
            for state in evaluatedConditions {
                let owner = conditions[Int(state)].owner
                for reader in owner >= 0 ? [owner] : sharedReaders[state] ?? [] where seen.insert(reader).inserted {
                    recombine(slot: Int(reader), at: time, into: &events)
                }
            }
            evaluatedConditions.removeAll(keepingCapacity: true)
        }
    }

    /// Takes a combined or grouped instance's truth at `time` from its conditions, through `on_unknown`,
    /// and steps it.
    mutating func recombine(slot: Int, at time: Int64, into events: inout [EvaluationEvent]) {
        let ruleIndex = Int(instances[slot].rule)
        if ruleSet.hasWindows[ruleIndex] {
            for input in inputs(of: slot) {
                refreshWindow(condition: Int(input), at: time)
            }
        }
        let truth = self.truth(ofInstance: slot, at: time)
        let policy = ruleSet.unknownPolicies[ruleIndex]
        let deadline =
            ruleSet.hasStaleConditions[ruleIndex] ? nextConditionDeadline(ofInstance: slot, after: time) : nil
        instances.withUnsafeMutableBufferPointer { instances in
            switch (truth, policy) {
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
            instances[slot].conditionDeadline = deadline
        }
        step(slot: slot, at: time, into: &events)
    }

    /// A combined or grouped instance's truth at `time`. (It changes nothing: `mutating` only so that
    /// `recombine` calls it without copying the whole evaluator, which a non-mutating call from a mutating
    /// one did, 288 bytes per instance moved.)
    mutating func truth(ofInstance slot: Int, at time: Int64) -> Truth {
        let ruleIndex = Int(instances[slot].rule)
        if let match = ruleSet.matches[ruleIndex] {
            let (holding, unknown) = memberCounts(ofInstance: slot, at: time)
            return Truth.vote(match, holding: holding, unknown: unknown, total: inputs(of: slot).count)
        }
        var node = Int(ruleSet.combinationStarts[ruleIndex])
        guard node >= 0 else { return instances[slot].holds ? .true : .false }
        return truth(atNode: &node, inputs: inputs(of: slot), rule: ruleIndex, at: time)
    }

    /// How many members of a group hold, and how many are unknown, at `time`.
    func memberCounts(ofInstance slot: Int, at time: Int64) -> (holding: Int, unknown: Int) {
        let stale = ruleSet.conditionCores[Int(instances[slot].rule)][0].staleMilliseconds
        var holding = 0
        var unknown = 0
        for member in inputs(of: slot) {
            switch conditions[Int(member)].truth(at: time, stale: stale) {
            case .true: holding += 1
            case .unknown: unknown += 1
            case .false: break
            }
        }
        return (holding, unknown)
    }

    /// The truth of the combination node at `node` (in `RuleSet.combinationNodes`, preorder), leaving `node`
    /// just past it and its elements. `inputs` are the instance's condition slots, looked up once per
    /// combination rather than once per leaf.
    func truth(atNode node: inout Int, inputs: [Int32], rule: Int, at time: Int64) -> Truth {
        let current = ruleSet.combinationNodes[node]
        node += 1
        switch current.kind {
        case .leaf:
            let leaf = Int(current.value)
            return conditions[Int(inputs[leaf])].truth(
                at: time,
                stale: ruleSet.conditionCores[rule][leaf].staleMilliseconds
            )
        case .all, .any:
            // Leaves are read here, the rest recursively: most combinations are a list of leaves.
            let isAll = current.kind == .all
            var result: Truth = isAll ? .true : .false
            for _ in 0..<current.value {
                let element = ruleSet.combinationNodes[node]
                let value: Truth
                if element.kind == .leaf {
                    node += 1
                    let leaf = Int(element.value)
                    value = conditions[Int(inputs[leaf])].truth(
                        at: time,
                        stale: ruleSet.conditionCores[rule][leaf].staleMilliseconds
                    )
                } else {
                    value = truth(atNode: &node, inputs: inputs, rule: rule, at: time)
                }
                result = isAll ? Truth.and(result, value) : Truth.or(result, value)
            }
            return result
        case .not:
            return truth(atNode: &node, inputs: inputs, rule: rule, at: time).negated
        }
    }

    /// The earliest time after `time` at which one of an instance's conditions goes stale or a reading leaves
    /// one of its windows.
    mutating func nextConditionDeadline(ofInstance slot: Int, after time: Int64) -> Int64? {  // mutating: as above
        let rule = Int(instances[slot].rule)
        let grouped = ruleSet.matches[rule] != nil
        var earliest: Int64?
        for (position, state) in inputs(of: slot).enumerated() {
            let core = ruleSet.conditionCores[rule][grouped ? 0 : position]
            let window = ruleSet.windows[rule][grouped ? 0 : position]
            if let window, let expiry = conditionWindows[state]?.nextExpiry(of: window), expiry > time {
                earliest = min(earliest ?? .max, expiry)
            }
            guard let stale = core.staleMilliseconds, let since = conditions[Int(state)].freshSince,
                conditions[Int(state)].usable || window != nil, since + stale > time
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
        return inputs(of: slot).enumerated().map { position, state in
            let condition = conditions[Int(state)]
            let leafIndex = Int(condition.leaf)
            let leaf = rule.leaves[leafIndex]
            let stale = ruleSet.conditionCores[ruleIndex][leafIndex].staleMilliseconds
            let truth = condition.truth(at: time, stale: stale)
            let window = windowReport(window: leaf.window, state: conditionWindows[state], at: time)
            var why: String?
            if truth == .unknown {
                if let window, window.value == nil {
                    why = "window: \(window.unknownBecause ?? "unknown")"
                } else if condition.lastReadingAt == nil {
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
                position: position,
                window: window
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
    /// Its window, when it has one (`value` is then the window's value).
    public var window: WindowReport?

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
        if let window { pairs.append(("window", window.json)) }
        return .object(pairs)
    }

    /// `name` or `topic`, `= value`, and the truth: one line of an audit or a reason.
    public var summary: String {
        let value = value.map { value -> String in
            if case .number(let number) = value { return Evaluator.readable(number) }
            return value.jsonText
        }
        return "\(name ?? topic)=\(value ?? "none") (\(unknownBecause.map { "unknown: \($0)" } ?? truth.rawValue))"
    }
}
