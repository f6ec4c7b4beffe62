/// The durable part of one rule instance, for `--state-dir`: enough to restart without forgetting a
/// pending `for` and without repeating or missing a transition.
public struct InstanceSnapshot: Sendable, Hashable, Codable {
    public enum Phase: String, Sendable, Hashable, Codable {
        case inactive, pending, firing
    }

    public var ruleID: String
    /// Identifies the rule's definition; a snapshot of a changed rule is not restored.
    public var definition: String
    public var labels: [String]
    public var phase: Phase
    /// When the instance entered `pending` or `firing`.
    public var since: Int64?
    public var holdsSince: Int64?
    /// The last usable value, as JSON text.
    public var lastValue: String?
    public var lastTransitionAt: Int64?
    public var recentTransitions: [Int64]
}

extension Rule {
    /// A text that changes whenever the rule's behaviour changes (not its description or position).
    public var definitionFingerprint: String {
        var rule = self
        rule.description = nil
        rule.location = SourceLocation(file: "", line: 0, column: 0)
        for index in rule.onFire.indices { rule.onFire[index].location = rule.location }
        for index in rule.onClear.indices { rule.onClear[index].location = rule.location }
        return String(describing: rule)
    }

    /// A short, stable hash of `definitionFingerprint` (FNV-1a, 64 bits, hex), for audit trails.
    public var definitionHash: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in definitionFingerprint.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

extension Evaluator {
    /// Swaps in a new rule set. Instances of rules whose definition did not change keep their whole
    /// state (pending timers, firing); instances of changed or removed rules start over.
    public mutating func replaceRules(with newSet: RuleSet) {
        var oldByID: [String: Int] = [:]
        for (index, rule) in ruleSet.rules.enumerated() { oldByID[rule.id] = index }
        var newInstances: [[[String]: Instance]] = Array(repeating: [:], count: newSet.rules.count)
        for (newIndex, rule) in newSet.rules.enumerated() {
            guard let oldIndex = oldByID[rule.id], ruleSet.rules[oldIndex].hasSameDefinition(as: rule) else { continue }
            newInstances[newIndex] = instances[oldIndex]
        }
        ruleSet = newSet
        instances = newInstances
        rebuildTimers()
    }

    /// Snapshots of the instances whose phase or last transition changed since the last call.
    public mutating func takeChangedInstances() -> [InstanceSnapshot] {
        defer { changed.removeAll(keepingCapacity: true) }
        return changed.compactMap { reference in
            guard reference.rule < instances.count, let instance = instances[reference.rule][reference.labels] else {
                return nil
            }
            return snapshot(of: instance, rule: ruleSet.rules[reference.rule])
        }
    }

    /// Snapshots of every instance that is not plainly inactive.
    public func snapshotAll() -> [InstanceSnapshot] {
        var result: [InstanceSnapshot] = []
        for (ruleIndex, byLabels) in instances.enumerated() {
            for instance in byLabels.values where instance.phase != .inactive || instance.lastTransitionAt != nil {
                result.append(snapshot(of: instance, rule: ruleSet.rules[ruleIndex]))
            }
        }
        return result
    }

    /// Restores snapshots of rules whose definition is unchanged; returns how many were restored.
    /// `stale` counts from `now` for restored instances (their last reading time is not kept).
    @discardableResult
    public mutating func restore(_ snapshots: [InstanceSnapshot], now: Int64) -> Int {
        var byID: [String: Int] = [:]
        for (index, rule) in ruleSet.rules.enumerated() { byID[rule.id] = index }
        var restored = 0
        for snapshot in snapshots {
            guard let ruleIndex = byID[snapshot.ruleID],
                ruleSet.rules[ruleIndex].definitionFingerprint == snapshot.definition,
                snapshot.labels.count == ruleSet.rules[ruleIndex].topic.captureNames.count
            else { continue }
            var instance = Instance(labels: snapshot.labels)
            switch snapshot.phase {
            case .inactive: instance.phase = .inactive
            case .pending: instance.phase = .pending(since: snapshot.since ?? now)
            case .firing: instance.phase = .firing(since: snapshot.since ?? now)
            }
            instance.holds = snapshot.phase != .inactive
            instance.holdsSince = snapshot.holdsSince
            instance.lastValue = snapshot.lastValue.flatMap { JSONValue(parsing: $0) }
            instance.lastReadingAt = now
            instance.lastTransitionAt = snapshot.lastTransitionAt
            instance.recentTransitions = snapshot.recentTransitions
            instances[ruleIndex][snapshot.labels] = instance
            restored += 1
        }
        self.now = max(self.now, now)
        rebuildTimers()
        return restored
    }

    private func snapshot(of instance: Instance, rule: Rule) -> InstanceSnapshot {
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
            definition: rule.definitionFingerprint,
            labels: instance.labels,
            phase: phase,
            since: since,
            holdsSince: instance.holdsSince,
            lastValue: instance.lastValue?.jsonText,
            lastTransitionAt: instance.lastTransitionAt,
            recentTransitions: instance.recentTransitions
        )
    }

    private mutating func rebuildTimers() {
        timers = TimerHeap()
        for ruleIndex in instances.indices {
            for key in Array(instances[ruleIndex].keys) {
                guard var instance = instances[ruleIndex][key] else { continue }
                instance.timerDue = nil
                schedule(&instance, ruleIndex: ruleIndex, rule: ruleSet.rules[ruleIndex])
                instances[ruleIndex][key] = instance
            }
        }
    }
}
