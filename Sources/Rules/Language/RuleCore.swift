import FileFormats

/// One condition's comparison as plain values (trivially copied on the hot path): a single-condition
/// rule's, a leaf's, or a group member's. An `equals` value is in `RuleSet.equalsValues`.
struct ConditionCore: Sendable {
    enum Comparison: Sendable {
        case above(Double, clear: Double)
        case below(Double, clear: Double)
        case between(Double, Double)
        case outside(Double, Double)
        /// Compared with the rule's `equals` value (looked up in the full rule).
        case equals
        /// `stale` alone: no reading ever holds; only silence fires it.
        case never

        /// Whether a numeric value meets the comparison; a firing `above`/`below` instance uses its clear
        /// threshold.
        @inline(__always)
        func holds(number: Double, firing: Bool) -> Bool {
            switch self {
            case .above(let threshold, let clear): firing ? number > clear : number > threshold
            case .below(let threshold, let clear): firing ? number < clear : number < threshold
            case .between(let low, let high): number >= low && number <= high
            case .outside(let low, let high): number < low || number > high
            case .equals, .never: false
            }
        }
    }

    /// What type the extracted value must have.
    enum ValueType: Sendable {
        case number, string, bool, any
    }

    var comparison: Comparison
    var valueType: ValueType
    /// Index into `RuleSet.fields`.
    var fieldIndex: Int
    var staleMilliseconds: Int64?
    /// Whether a window's value is compared instead of each reading (the window is in `RuleSet.windows`, so
    /// this core, copied per reading, stays small).
    var hasWindow: Bool

    init(_ leaf: Rule.Leaf, fieldIndex: Int) {
        switch leaf.condition {
        case .above(let threshold):
            comparison = .above(threshold, clear: leaf.clear ?? threshold)
            valueType = .number
        case .below(let threshold):
            comparison = .below(threshold, clear: leaf.clear ?? threshold)
            valueType = .number
        case .between(let low, let high):
            comparison = .between(low, high)
            valueType = .number
        case .outside(let low, let high):
            comparison = .outside(low, high)
            valueType = .number
        case .staleOnly:
            comparison = .never
            valueType = .any
        case .equals(let expected):
            comparison = .equals
            switch expected {
            case .number: valueType = .number
            case .string: valueType = .string
            case .bool: valueType = .bool
            default: valueType = .any
            }
        }
        self.fieldIndex = fieldIndex
        staleMilliseconds = leaf.staleMilliseconds
        hasWindow = leaf.window != nil
    }

    /// What `window` takes in from a usable reading: its number, or for `at_least` 1 when the reading passes
    /// the threshold (no hysteresis: each reading is judged on its own).
    func windowSample(_ value: JSONValue, expected: JSONValue?, window: Rule.Window) -> Double? {
        switch window {
        case .atLeast, .times: return holds(value, expected: expected, latched: false) ? 1 : 0
        default: break
        }
        guard case .number(let number) = value else { return nil }
        return number
    }

    /// Whether `window`'s value meets the condition: `at_least`'s count reaches M; any other window's value
    /// is compared like a reading, with hysteresis.
    func holds(windowValue value: Double, window: Rule.Window, latched: Bool) -> Bool {
        switch window {
        case .atLeast(let needed, _), .times(let needed, _): return value >= Double(needed)
        default: break
        }
        return holds(number: value, firing: latched)
    }

    /// The comparison, when a numeric reading needs nothing else: no window, not `equals`, a number expected.
    var numericComparison: Comparison? {
        !hasWindow && valueType == .number && !comparesByEquality ? comparison : nil
    }

    /// Whether the condition compares with its `equals` value rather than thresholds.
    var comparesByEquality: Bool {
        if case .equals = comparison { return true }
        return false
    }

    /// Whether a numeric value meets the condition; a firing `above`/`below` instance uses its clear threshold.
    @inline(__always)
    func holds(number: Double, firing: Bool) -> Bool {
        comparison.holds(number: number, firing: firing)
    }

    /// Whether a usable value (of the type `valueType` asks for) meets the condition; `expected` is the
    /// leaf's `equals` value (kept out of this plain-data core), `latched` whether it held before (a firing
    /// single condition, or a latched leaf), for hysteresis.
    func holds(_ value: JSONValue, expected: JSONValue?, latched: Bool) -> Bool {
        if comparesByEquality { return value == expected }
        guard case .number(let number) = value else { return false }
        return holds(number: number, firing: latched)
    }
}

/// The parts of a rule that every reading needs, as plain values.
///
/// Copying a `Rule` retains a dozen buffers (strings, arrays, templates); the evaluator's per-reading
/// path reads this instead and touches the full `Rule` only when an instance transitions.
struct RuleCore: Sendable {
    /// A single condition's comparison (a combined or grouped rule's first leaf's: unused).
    var condition: ConditionCore
    /// False for a combination or a group: its instances take their truth from their conditions' states.
    var isSingleCondition: Bool
    var forMilliseconds: Int64
    var cooldownMilliseconds: Int64
    var minOnMilliseconds: Int64
    var minOffMilliseconds: Int64
    /// A single condition's `stale` (it fires the rule); nil for combined and grouped rules.
    var staleMilliseconds: Int64?
    var maxTransitions: Rule.TransitionLimit?
    var onUnknown: Rule.UnknownPolicy
    /// Whether the rule has a window, a schedule, `keep_firing_for` or flap detection (the clocked step; their
    /// settings are in `RuleSet.clockSettings`, so this core, copied per reading, stays small).
    var usesClock: Bool

    init(_ rule: Rule, condition: ConditionCore) {
        self.condition = condition
        isSingleCondition = rule.isSingleCondition
        forMilliseconds = rule.forMilliseconds
        cooldownMilliseconds = rule.cooldownMilliseconds
        minOnMilliseconds = rule.minOnMilliseconds
        minOffMilliseconds = rule.minOffMilliseconds
        staleMilliseconds = rule.staleMilliseconds
        maxTransitions = rule.maxTransitions
        onUnknown = rule.onUnknown
        usesClock = rule.usesClock
    }

    var valueType: ConditionCore.ValueType { condition.valueType }
    var fieldIndex: Int { condition.fieldIndex }
}

/// What a reading of a number needs of a single-condition threshold rule, the common case, in 24 bytes
/// instead of the 120 of `RuleCore` (read once per instance a reading reaches).
struct NumericCheck: Sendable {
    /// nil when the rule needs more than a comparison: a combination or group, a window, an `equals`, a value
    /// that is not a number.
    var comparison: ConditionCore.Comparison?
    /// Whether every reading steps the state machine, even one that changes nothing: `stale` moves its timer
    /// on each reading, and a clocked rule's step counts results for flap detection.
    var stepsEveryReading: Bool

    init(_ core: RuleCore) {
        comparison = core.isSingleCondition ? core.condition.numericComparison : nil
        stepsEveryReading = core.staleMilliseconds != nil || core.usesClock
    }
}

/// What the clocked step needs of a rule that uses the clock.
struct ClockSettings: Sendable {
    var keepFiringForMilliseconds: Int64
    var outsideActiveHolds: Bool
    var flapping: Rule.FlapDetection?

    init(_ rule: Rule) {
        keepFiringForMilliseconds = rule.keepFiringForMilliseconds
        outsideActiveHolds = rule.outsideActive == .hold
        flapping = rule.flapping
    }
}
