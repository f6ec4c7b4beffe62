import FileFormats

/// One rule instance as people look at it (`/api/instances`, `rules-engine explain`).
public struct InstanceReport: Sendable, Hashable {
    public var ruleID: String
    public var labels: [Label]
    /// `inactive`, `pending` or `firing`.
    public var state: InstanceSnapshot.Phase
    /// When it became pending or firing (nil when inactive).
    public var since: Int64?
    public var lastValue: JSONValue?
    public var lastReadingAt: Int64?
    public var lastTransitionAt: Int64?
    /// Why it last fired or cleared.
    public var lastReason: String?
    /// When its next timer (`for`, `stale`, a deferred transition) is due.
    public var nextTimerDue: Int64?
    public var stale: Bool
    /// Whether flap detection (`flapping:`) holds it, and the weighted percentage of recent changes.
    public var flapping: Bool
    public var flapPercent: Double?
    /// Whether `max_transitions` holds a transition back.
    public var limited: Bool = false
    /// A single condition's window: its value, how many readings it holds, why it is unknown.
    public var window: WindowReport?
    /// A combined rule's leaves or a group's members: value, truth, why unknown (empty for a single condition).
    public var conditions: [ConditionReport] = []
    /// What holds it in its state against its condition (`min_on`, `min_off`, `cooldown`, `max_transitions`,
    /// `keep_firing_for`, `flapping`) and until when.
    public var held: (by: String, until: Int64?)?

    public static func == (lhs: InstanceReport, rhs: InstanceReport) -> Bool {
        lhs.json == rhs.json
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(json)
    }

    /// As a JSON object, keys in a stable order; `conditions` (or a group's `members`) only when it has them.
    public var json: JSONValue {
        func number(_ value: Int64?) -> JSONValue { value.map { .number(Double($0)) } ?? .null }
        var object = JSONValue.object([
            ("rule", .string(ruleID)),
            ("labels", .object(labels.map { ($0.name, .string($0.value)) })),
            ("state", .string(state.rawValue)),
            ("since", number(since)),
            ("last_value", lastValue ?? .null),
            ("last_reading_at", number(lastReadingAt)),
            ("last_transition_at", number(lastTransitionAt)),
            ("last_reason", lastReason.map(JSONValue.string) ?? .null),
            ("next_timer_due", number(nextTimerDue)),
            ("stale", .bool(stale)),
            ("flapping", .bool(flapping)),
            ("limited", .bool(limited)),
        ])
        if let flapPercent { object = object.setting("flap_percent", to: .number(flapPercent)) }
        if let held {
            object = object.setting("held_by", to: .string(held.by)).setting("held_until", to: number(held.until))
        }
        if let window { object = object.setting("window", to: window.json) }
        if let first = conditions.first {
            object = object.setting(first.isMember ? "members" : "conditions", to: .array(conditions.map(\.json)))
        }
        return object
    }
}

extension Evaluator {
    /// How many instances each rule has and how many of them are firing, by rule id (rules without
    /// instances are absent).
    public func instanceCounts() -> [String: (all: Int, firing: Int)] {
        var counts: [String: (all: Int, firing: Int)] = [:]
        for instance in instances {
            counts[ruleSet.rules[Int(instance.rule)].id, default: (0, 0)].all += 1
            if instance.isFiring { counts[ruleSet.rules[Int(instance.rule)].id, default: (0, 0)].firing += 1 }
        }
        return counts
    }

    /// What keeps an instance in its state although its condition says otherwise, and until when: a transition
    /// deferred by `min_on`, `min_off`, `cooldown` or `max_transitions`, a clear `keep_firing_for` waits for, or
    /// flap detection.
    func heldState(of instance: Instance, rule: Rule, slot: Int) -> (by: String, until: Int64?)? {
        if instance.isDeferred, let until = deferrals[Int32(slot)] {
            let last = instance.lastTransitionAt ?? .min
            if instance.limited { return ("max_transitions", until) }
            if instance.isFiring {
                return (
                    until == last + rule.minOnMilliseconds && rule.minOnMilliseconds > 0 ? "min_on" : "cooldown", until
                )
            }
            return (
                until == last + rule.minOffMilliseconds && rule.minOffMilliseconds > 0 ? "min_off" : "cooldown", until
            )
        }
        let clock = clockStates[Int32(slot)]
        if instance.isFiring, rule.keepFiringForMilliseconds > 0, let since = clock?.notHoldingSince {
            return ("keep_firing_for", since + rule.keepFiringForMilliseconds)
        }
        if clock?.isFlapping == true { return ("flapping", nil) }
        return nil
    }

    /// Every instance (of one rule, when `ruleID` is given), in rule order, then by labels.
    public func instanceReports(ruleID: String? = nil) -> [InstanceReport] {
        var reports: [InstanceReport] = []
        for (slot, instance) in instances.enumerated() {
            let rule = ruleSet.rules[Int(instance.rule)]
            if let ruleID, rule.id != ruleID { continue }
            let state: InstanceSnapshot.Phase
            var since: Int64?
            switch instance.phase {
            case .inactive: state = .inactive
            case .pending(let start):
                state = .pending
                since = start
            case .firing(let start):
                state = .firing
                since = start
            }
            reports.append(
                InstanceReport(
                    ruleID: rule.id,
                    labels: zip(rule.captureNames, instance.labels).map { Label(name: $0, value: $1) },
                    state: state,
                    since: since,
                    lastValue: instance.lastValue,
                    lastReadingAt: instance.lastReadingAt,
                    lastTransitionAt: instance.lastTransitionAt,
                    lastReason: lastReasons[Int32(slot)],
                    nextTimerDue: instance.timerDue,
                    stale: instance.stale,
                    flapping: clockStates[Int32(slot)]?.isFlapping ?? false,
                    flapPercent: rule.flapping == nil ? nil : clockStates[Int32(slot)]?.flapPercent ?? 0,
                    limited: instance.limited,
                    window: rule.isSingleCondition
                        ? windowReport(
                            window: rule.leaves[0].window,
                            state: instanceWindows[Int32(slot)],
                            at: now
                        ) : nil,
                    conditions: conditionReports(ofInstance: slot, at: now),
                    held: heldState(of: instance, rule: rule, slot: slot)
                )
            )
        }
        let order = Dictionary(ruleSet.rules.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
        return reports.sorted {
            (order[$0.ruleID] ?? 0, $0.labels.description) < (order[$1.ruleID] ?? 0, $1.labels.description)
        }
    }
}
