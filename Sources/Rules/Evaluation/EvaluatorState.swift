import FileFormats

/// The durable part of one rule instance, for `--state-dir`: enough to restart without forgetting a
/// pending `for` and without repeating or missing a transition.
public struct InstanceSnapshot: Sendable, Hashable, Codable {
    /// Where the instance stands in its state machine.
    public enum Phase: String, Sendable, Hashable, Codable {
        case inactive, pending, firing
    }

    public var ruleID: String
    /// The rule's `definitionHash` (earlier versions wrote the whole fingerprint; both are accepted);
    /// a snapshot of a changed rule is not restored.
    public var definition: String
    public var labels: [String]
    public var phase: Phase
    /// When the instance entered `pending` or `firing`.
    public var since: Int64?
    public var holdsSince: Int64?
    /// The last usable value, as JSON text.
    public var lastValue: String?
    /// When the last usable reading arrived (absent in snapshots written before it was kept).
    public var lastReadingAt: Int64?
    public var lastTransitionAt: Int64?
    public var recentTransitions: [Int64]
    /// A combined rule's leaves, a group's members (absent for a single condition).
    public var conditions: [ConditionSnapshot]?
    /// A single condition's window (absent without one).
    public var window: WindowSnapshot?
    /// Since when a firing instance's condition has not held (`keep_firing_for` is waiting).
    public var notHoldingSince: Int64?
    /// Whether flap detection holds the instance, and its recent results (absent without `flapping:`).
    public var flapHistory: UInt64?
    public var flapSamples: Int?
    public var flapping: Bool?
}

/// A window's readings, for `--state-dir`: what it needs to go on sliding (a running sum cannot age out
/// without the readings it summed), times and values side by side.
public struct WindowSnapshot: Sendable, Hashable, Codable {
    public var times: [Int64]
    public var values: [Double]
    public var droppedSamples: Int
    /// `times`: whether the last usable reading passed the threshold (absent for other windows and before it).
    public var lastPassed: Bool?
    /// The newest reading dropped for `max_samples` that may still be inside the window (absent when none).
    public var lastDroppedAt: Int64?

    init(_ state: WindowState) {
        times = state.samples.map(\.time)
        values = state.samples.map(\.value)
        droppedSamples = state.droppedSamples
        lastPassed = state.lastPassed
        lastDroppedAt = state.lastDroppedAt
    }

    func state(for window: Rule.Window) -> WindowState {
        WindowState(
            samples: zip(times, values).map { WindowState.Sample(time: $0, value: $1) },
            droppedSamples: droppedSamples,
            lastPassed: lastPassed,
            lastDroppedAt: lastDroppedAt,
            window: window
        )
    }
}

/// The durable part of one leaf or member of an instance: its latched state and last value.
public struct ConditionSnapshot: Sendable, Hashable, Codable {
    public var leaf: Int
    public var labels: [String]
    public var latched: Bool
    public var usable: Bool
    public var lastValue: String?
    public var lastReadingAt: Int64?
    /// The leaf's or member's window (absent without one).
    public var window: WindowSnapshot?
}

extension Rule {
    /// A text that changes whenever the rule's behaviour changes (not its description or position).
    public var definitionFingerprint: String {
        let definition = definition
        let usesTimeKeys = usesClock || leaves.contains { $0.maxSamples != Window.defaultMaxSamples }
        guard !usesTimeKeys else { return String(describing: definition) }
        guard definition.isSingleCondition else {
            // A rule without the keys added with windows keeps the text it had before them (state saved by
            // the version that added combinations restores after an upgrade).
            return String(describing: definition)
                .replacing(", window: nil, maxSamples: \(Window.defaultMaxSamples)", with: "")
                .replacing(
                    ", keepFiringForMilliseconds: 0, schedule: nil, outsideActive: Rules.Rule.OutsideActive.clear, "
                        + "flapping: nil",
                    with: ""
                )
        }
        // A single-condition rule keeps the text it had before rules had leaves, so that state saved by an
        // earlier version is restored after an upgrade.
        let text = String(describing: SingleConditionDefinition(definition))
        return "Rule" + text.dropFirst("SingleConditionDefinition".count)
    }

    /// A short, stable hash of `definitionFingerprint` (FNV-1a, 64 bits, hex), for audit trails.
    public var definitionHash: String {
        Rule.hash(ofFingerprint: definitionFingerprint)
    }

    /// FNV-1a, 64 bits, as 16 hex digits.
    public static func hash(ofFingerprint fingerprint: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in fingerprint.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// A single-condition rule's fields in the order and with the names `Rule` had before combinations: its
/// description is the fingerprint that earlier versions wrote into `--state-dir` snapshots.
private struct SingleConditionDefinition {
    var id: String
    var description: String?
    var topic: TopicPattern
    var field: [String]
    var condition: Rule.Condition
    var clear: Double?
    var forMilliseconds: Int64
    var cooldownMilliseconds: Int64
    var staleMilliseconds: Int64?
    var severity: Rule.Severity
    var onUnknown: Rule.UnknownPolicy
    var minOnMilliseconds: Int64
    var minOffMilliseconds: Int64
    var maxTransitions: Rule.TransitionLimit?
    var onFire: [Action]
    var onClear: [Action]
    var location: SourceLocation

    init(_ rule: Rule) {
        id = rule.id
        description = rule.description
        topic = rule.topic
        field = rule.field
        condition = rule.condition
        clear = rule.clear
        forMilliseconds = rule.forMilliseconds
        cooldownMilliseconds = rule.cooldownMilliseconds
        staleMilliseconds = rule.staleMilliseconds
        severity = rule.severity
        onUnknown = rule.onUnknown
        minOnMilliseconds = rule.minOnMilliseconds
        minOffMilliseconds = rule.minOffMilliseconds
        maxTransitions = rule.maxTransitions
        onFire = rule.onFire
        onClear = rule.onClear
        location = rule.location
    }
}

extension Evaluator {
    /// Swaps in a new rule set. Instances of rules whose definition did not change keep their whole
    /// state (pending timers, firing); instances of changed or removed rules start over.
    ///
    /// A rule whose only change is the length of a window keeps its instances, and that window starts over
    /// (its readings are dropped): the returned `windowRestarted` events say so.
    @discardableResult
    public mutating func replaceRules(with newSet: RuleSet) -> [EvaluationEvent] {
        var oldByID: [String: Int] = [:]
        for (index, rule) in ruleSet.rules.enumerated() { oldByID[rule.id] = index }
        var newIndexByOld: [Int: Int] = [:]
        /// Per old rule whose windows changed length only: the leaves whose window starts over.
        var restartedLeaves: [Int: Set<Int32>] = [:]
        var events: [EvaluationEvent] = []
        for (newIndex, rule) in newSet.rules.enumerated() {
            guard let oldIndex = oldByID[rule.id] else { continue }
            let old = ruleSet.rules[oldIndex]
            if old.hasSameDefinition(as: rule) {
                newIndexByOld[oldIndex] = newIndex
            } else if let leaves = old.leavesWithOnlyWindowLengthChanged(in: rule) {
                newIndexByOld[oldIndex] = newIndex
                restartedLeaves[oldIndex] = Set(leaves.map(Int32.init))
                for leaf in leaves {
                    events.append(
                        .windowRestarted(
                            ruleID: rule.id,
                            window: rule.leaves[leaf].window.map(String.init(describing:)) ?? ""
                        )
                    )
                }
            }
        }
        var newInstances: ContiguousArray<Instance> = []
        var newSlotByOld: [Int32: Int32] = [:]
        var newInstanceWindows: [Int32: WindowState] = [:]
        var newClockStates: [Int32: ClockState] = [:]
        for (oldSlot, instance) in instances.enumerated() {
            guard let newRule = newIndexByOld[Int(instance.rule)] else { continue }
            var moved = instance
            moved.rule = Int32(newRule)
            let newSlot = Int32(newInstances.count)
            newInstances.append(moved)
            newSlotByOld[Int32(oldSlot)] = newSlot
            if restartedLeaves[Int(instance.rule)]?.contains(0) != true, let window = instanceWindows[Int32(oldSlot)] {
                newInstanceWindows[newSlot] = window
            }
            newClockStates[newSlot] = clockStates[Int32(oldSlot)]
        }
        var newConditionWindows: [Int32: WindowState] = [:]
        var newConditions: ContiguousArray<ConditionState> = []
        var newConditionSlots: [ConditionKey: Int32] = [:]
        var newConditionByOld: [Int32: Int32] = [:]
        for (oldSlot, condition) in conditions.enumerated() {
            guard let newRule = newIndexByOld[Int(condition.rule)] else { continue }
            var moved = condition
            moved.rule = Int32(newRule)
            if moved.owner >= 0 { moved.owner = newSlotByOld[moved.owner] ?? -1 }
            let newSlot = Int32(newConditions.count)
            newConditions.append(moved)
            let key = ConditionKey(rule: condition.rule, leaf: condition.leaf, labels: condition.labels)
            if conditionSlots[key] == Int32(oldSlot) {
                newConditionSlots[ConditionKey(rule: moved.rule, leaf: moved.leaf, labels: moved.labels)] = newSlot
            }
            newConditionByOld[Int32(oldSlot)] = newSlot
            if restartedLeaves[Int(condition.rule)]?.contains(condition.leaf) != true,
                let window = conditionWindows[Int32(oldSlot)]
            {
                newConditionWindows[newSlot] = window
            }
        }
        instanceWindows = newInstanceWindows
        conditionWindows = newConditionWindows
        clockStates = newClockStates
        scheduleSpans = [:]
        sharedReaders = Dictionary(
            uniqueKeysWithValues: sharedReaders.compactMap { state, readers in
                newConditionByOld[state].map { ($0, readers.compactMap { newSlotByOld[$0] }) }
            }
        )
        instanceInputs = Dictionary(
            uniqueKeysWithValues: instanceInputs.compactMap { slot, inputs in
                newSlotByOld[slot].map { ($0, inputs.compactMap { newConditionByOld[$0] }) }
            }
        )
        conditions = newConditions
        conditionSlots = newConditionSlots
        conditionProblems = Dictionary(
            uniqueKeysWithValues: conditionProblems.compactMap { slot, problem in
                newConditionByOld[slot].map { ($0, problem) }
            }
        )
        effects.changed = effects.changed.compactMap { newSlotByOld[$0] }
        lastProblems = Dictionary(
            uniqueKeysWithValues: lastProblems.compactMap { slot, problem in newSlotByOld[slot].map { ($0, problem) } }
        )
        lastReasons = Dictionary(
            uniqueKeysWithValues: lastReasons.compactMap { slot, reason in newSlotByOld[slot].map { ($0, reason) } }
        )
        recentTransitions = Dictionary(
            uniqueKeysWithValues: recentTransitions.compactMap { slot, times in newSlotByOld[slot].map { ($0, times) } }
        )
        deferrals = Dictionary(
            uniqueKeysWithValues: deferrals.compactMap { slot, until in
                guard let moved = newSlotByOld[slot], newInstances[Int(moved)].isDeferred else { return nil }
                return (moved, until)
            }
        )
        ruleSet = newSet
        instances = newInstances
        instanceIndex = InstanceIndex(of: instances)
        // Topics are matched again against the new rules; their `seq` memory stays.
        clearResolutions()
        // A restarted window changes its condition's value now.
        if !restartedLeaves.isEmpty {
            for (slot, instance) in instances.enumerated()
            where ruleSet.cores[Int(instance.rule)].isSingleCondition && ruleSet.hasWindows[Int(instance.rule)] {
                refreshWindow(instance: slot, at: now)
            }
        }
        rebuildTimers()
        return events
    }

    /// Snapshots of the instances whose phase or last transition changed since the last call.
    public mutating func takeChangedInstances() -> [InstanceSnapshot] {
        defer { effects.changed.removeAll(keepingCapacity: true) }
        var seen = Set<Int32>()
        return effects.changed.compactMap { slot in
            guard seen.insert(slot).inserted else { return nil }
            let instance = instances[Int(slot)]
            return snapshot(of: instance, rule: ruleSet.rules[Int(instance.rule)], slot: slot)
        }
    }

    /// The last `seq` seen on every topic that had one.
    public var lastSequences: [String: Int64] {
        var result: [String: Int64] = [:]
        for index in 0..<routes.count where routes[route: index].lastSequence != .min {
            result[routes.topic(at: index)] = routes[route: index].lastSequence
        }
        return result
    }

    /// Restores the last `seq` per topic (kept with `--state-dir`): a reading at or below it is a duplicate.
    public mutating func restoreSequences(_ sequences: [String: Int64]) {
        for (topic, sequence) in sequences {
            let index = routes.index(of: topic) ?? routes.insert(topic, route: Route())
            routes[route: index].lastSequence = max(routes[route: index].lastSequence, sequence)
        }
    }

    /// Snapshots of every instance that is not plainly inactive.
    public func snapshotAll() -> [InstanceSnapshot] {
        instances.indices.compactMap { slot in
            let instance = instances[slot]
            let rule = ruleSet.rules[Int(instance.rule)]
            guard instance.phase != .inactive || instance.lastTransitionAt != nil || rule.usesClock else { return nil }
            return snapshot(of: instance, rule: rule, slot: Int32(slot))
        }
    }

    /// Restores snapshots of rules whose definition is unchanged; returns how many were restored.
    /// `stale` counts from `now` for restored instances: the engine could not hear the sensor while it was down.
    @discardableResult
    public mutating func restore(_ snapshots: [InstanceSnapshot], now: Int64) -> Int {
        var byID: [String: Int] = [:]
        for (index, rule) in ruleSet.rules.enumerated() { byID[rule.id] = index }
        var restored = 0
        for snapshot in snapshots {
            guard let ruleIndex = byID[snapshot.ruleID],
                ruleSet.definitionHashes[ruleIndex] == snapshot.definition
                    || Rule.hash(ofFingerprint: snapshot.definition) == ruleSet.definitionHashes[ruleIndex],
                snapshot.labels.count == ruleSet.rules[ruleIndex].captureNames.count
            else { continue }
            let slot: Int32
            if ruleSet.cores[ruleIndex].isSingleCondition {
                slot = self.slot(rule: ruleIndex, labels: snapshot.labels)
            } else {
                guard snapshot.labels.allSatisfy(TopicPattern.isSafeCaptureValue) else { continue }
                slot = combinedSlot(rule: ruleIndex, labels: snapshot.labels)
                restoreConditions(snapshot.conditions ?? [], instance: slot, now: now)
            }
            var instance = Instance(rule: Int32(ruleIndex), labels: snapshot.labels)
            switch snapshot.phase {
            case .inactive: instance.phase = .inactive
            case .pending: instance.phase = .pending(since: snapshot.since ?? now)
            case .firing: instance.phase = .firing(since: snapshot.since ?? now)
            }
            instance.holds = snapshot.phase != .inactive
            instance.holdsSince = snapshot.holdsSince
            instance.lastValue = snapshot.lastValue.flatMap { JSONValue(parsing: $0) }
            instance.lastReadingAt = snapshot.lastReadingAt
            instance.staleSince = now
            instance.lastTransitionAt = snapshot.lastTransitionAt
            recentTransitions[slot] = snapshot.recentTransitions.isEmpty ? nil : snapshot.recentTransitions
            instances[Int(slot)] = instance
            if let saved = snapshot.window, let window = ruleSet.rules[ruleIndex].leaves[0].window,
                ruleSet.cores[ruleIndex].isSingleCondition
            {
                instanceWindows[slot] = saved.state(for: window)
                refreshWindow(instance: Int(slot), at: now)
                if snapshot.phase != .inactive { instances[Int(slot)].holds = true }
            }
            if snapshot.notHoldingSince != nil || snapshot.flapping != nil {
                var clock = ClockState()
                clock.notHoldingSince = snapshot.notHoldingSince
                clock.flapHistory = snapshot.flapHistory ?? 0
                clock.flapSamples = snapshot.flapSamples ?? 0
                clock.isFlapping = snapshot.flapping ?? false
                clockStates[slot] = clock
                if snapshot.notHoldingSince != nil { instances[Int(slot)].holds = false }
            }
            if !ruleSet.cores[ruleIndex].isSingleCondition {
                // `staleSince` (set above) shares its storage with the conditions' next deadline.
                instances[Int(slot)].conditionDeadline = nextConditionDeadline(ofInstance: Int(slot), after: now)
            }
            lastProblems[slot] = nil
            lastReasons[slot] = nil
            restored += 1
        }
        self.now = max(self.now, now)
        rebuildTimers()
        return restored
    }

    /// Restores a combined instance's leaves or a group's members; `stale` counts from `now`.
    private mutating func restoreConditions(_ snapshots: [ConditionSnapshot], instance slot: Int32, now: Int64) {
        let ruleIndex = Int(instances[Int(slot)].rule)
        let rule = ruleSet.rules[ruleIndex]
        for saved in snapshots {
            guard rule.leaves.indices.contains(saved.leaf),
                saved.labels.count == rule.leaves[saved.leaf].topic.captureNames.count,
                saved.labels.allSatisfy(TopicPattern.isSafeCaptureValue)
            else { continue }
            let state: Int32
            if rule.grouping != nil {
                let (member, created) = keyedCondition(
                    rule: ruleIndex,
                    leaf: saved.leaf,
                    labels: saved.labels,
                    owner: slot
                )
                if created { instanceInputs[slot, default: []].append(member) }
                state = member
            } else {
                // The instance already has a state for each of its leaves (its own or a shared one).
                state = inputs(of: Int(slot))[saved.leaf]
                guard conditions[Int(state)].labels == saved.labels else { continue }
            }
            conditions[Int(state)].latched = saved.latched
            conditions[Int(state)].usable = saved.usable
            conditions[Int(state)].lastValue = saved.lastValue.flatMap { JSONValue(parsing: $0) }
            conditions[Int(state)].lastReadingAt = saved.lastReadingAt
            conditions[Int(state)].freshSince = now
            if let window = saved.window, let kind = rule.leaves[saved.leaf].window {
                conditionWindows[state] = window.state(for: kind)
                refreshWindow(condition: Int(state), at: now)
            }
        }
    }

    private func snapshot(of instance: Instance, rule: Rule, slot: Int32?) -> InstanceSnapshot {
        let inputs = slot.map { self.inputs(of: Int($0)) } ?? []
        let phase: InstanceSnapshot.Phase
        var since: Int64?
        switch instance.phase {
        case .inactive: phase = .inactive
        case .pending(let start):
            phase = .pending
            since = start
        case .firing(let start):
            phase = .firing
            since = start
        }
        return InstanceSnapshot(
            ruleID: rule.id,
            definition: ruleSet.definitionHashes[Int(instance.rule)],
            labels: instance.labels,
            phase: phase,
            since: since,
            holdsSince: instance.holdsSince,
            lastValue: instance.lastValue?.jsonText,
            lastReadingAt: instance.lastReadingAt,
            lastTransitionAt: instance.lastTransitionAt,
            recentTransitions: slot.flatMap { recentTransitions[$0] } ?? [],
            conditions: inputs.isEmpty
                ? nil
                : inputs.map { slot in
                    let condition = conditions[Int(slot)]
                    return ConditionSnapshot(
                        leaf: Int(condition.leaf),
                        labels: condition.labels,
                        latched: condition.latched,
                        usable: condition.usable,
                        lastValue: condition.lastValue?.jsonText,
                        lastReadingAt: condition.lastReadingAt,
                        window: conditionWindows[slot].map(WindowSnapshot.init)
                    )
                },
            window: slot.flatMap { instanceWindows[$0] }.map(WindowSnapshot.init),
            notHoldingSince: slot.flatMap { clockStates[$0]?.notHoldingSince },
            flapHistory: rule.flapping == nil ? nil : slot.flatMap { clockStates[$0]?.flapHistory },
            flapSamples: rule.flapping == nil ? nil : slot.flatMap { clockStates[$0]?.flapSamples },
            flapping: rule.flapping == nil ? nil : slot.flatMap { clockStates[$0]?.isFlapping }
        )
    }

    private mutating func rebuildTimers() {
        effects.timers = TimerHeap()
        for slot in instances.indices {
            instances[slot].timerDue = nil
            let rule = Int(instances[slot].rule)
            let core = ruleSet.cores[rule]
            // A window's oldest reading ages out on the clock, as `step` schedules it.
            var wake: Int64?
            if core.isSingleCondition, let window = ruleSet.windows[rule][0] {
                wake = instanceWindows[Int32(slot)]?.nextExpiry(of: window)
            }
            scheduleTimer(slot: slot, core: core, wake: wake)
        }
    }
}
