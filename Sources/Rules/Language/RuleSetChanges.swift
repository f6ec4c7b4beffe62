/// What a reload changes, rule by rule (by id), in the order the rules appear.
public struct RuleSetChanges: Sendable, Equatable {
    /// Rules that are new: their instances appear with the first matching reading.
    public var added: [String] = []
    /// Rules that are gone: their instances end.
    public var removed: [String] = []
    /// Rules whose definition changed: their instances start over.
    public var changed: [String] = []
    /// Rules whose only change is a window's length: they keep their instances, and that window starts over.
    public var windowsRestarted: [String] = []

    /// Compares `old` with `new` as `Evaluator.replaceRules` will apply it (a new description or position
    /// is no change).
    public init(from old: RuleSet, to new: RuleSet) {
        var oldByID: [String: Rule] = [:]
        for rule in old.rules { oldByID[rule.id] = rule }
        let newIDs = Set(new.rules.map(\.id))
        for rule in new.rules {
            guard let previous = oldByID[rule.id] else {
                added.append(rule.id)
                continue
            }
            if previous.hasSameDefinition(as: rule) { continue }
            if previous.leavesWithOnlyWindowLengthChanged(in: rule) != nil {
                windowsRestarted.append(rule.id)
            } else {
                changed.append(rule.id)
            }
        }
        removed = old.rules.map(\.id).filter { !newIDs.contains($0) }
    }

    /// Whether instances of the rule `id` end or start over.
    public func dropsInstances(of id: String) -> Bool { removed.contains(id) || changed.contains(id) }
}
