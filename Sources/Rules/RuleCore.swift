import FileFormats

/// The parts of a rule that every reading needs, as plain values.
///
/// Copying a `Rule` retains a dozen buffers (strings, arrays, templates); the evaluator's per-reading
/// path reads this instead and touches the full `Rule` only when an instance transitions.
struct RuleCore: Sendable {
    enum Comparison: Sendable {
        case above(Double, clear: Double)
        case below(Double, clear: Double)
        case between(Double, Double)
        case outside(Double, Double)
        /// Compared with the rule's `equals` value (looked up in the full rule).
        case equals
    }

    /// What type the extracted value must have.
    enum ValueType: Sendable {
        case number, string, bool, any
    }

    var comparison: Comparison
    var valueType: ValueType
    /// Index into `RuleSet.fields`.
    var fieldIndex: Int
    var forMilliseconds: Int64
    var cooldownMilliseconds: Int64
    var minOnMilliseconds: Int64
    var minOffMilliseconds: Int64
    var staleMilliseconds: Int64?
    var maxTransitions: Rule.TransitionLimit?
    var onUnknown: Rule.UnknownPolicy

    init(_ rule: Rule, fieldIndex: Int) {
        switch rule.condition {
        case .above(let threshold):
            comparison = .above(threshold, clear: rule.clear ?? threshold)
            valueType = .number
        case .below(let threshold):
            comparison = .below(threshold, clear: rule.clear ?? threshold)
            valueType = .number
        case .between(let low, let high):
            comparison = .between(low, high)
            valueType = .number
        case .outside(let low, let high):
            comparison = .outside(low, high)
            valueType = .number
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
        forMilliseconds = rule.forMilliseconds
        cooldownMilliseconds = rule.cooldownMilliseconds
        minOnMilliseconds = rule.minOnMilliseconds
        minOffMilliseconds = rule.minOffMilliseconds
        staleMilliseconds = rule.staleMilliseconds
        maxTransitions = rule.maxTransitions
        onUnknown = rule.onUnknown
    }

    /// Whether the rule compares with its `equals` value rather than thresholds.
    var comparesByEquality: Bool {
        if case .equals = comparison { return true }
        return false
    }

    /// Whether a numeric value meets the condition; a firing `above`/`below` instance uses its clear threshold.
    @inline(__always)
    func holds(number: Double, firing: Bool) -> Bool {
        switch comparison {
        case .above(let threshold, let clear): firing ? number > clear : number > threshold
        case .below(let threshold, let clear): firing ? number < clear : number < threshold
        case .between(let low, let high): number >= low && number <= high
        case .outside(let low, let high): number < low || number > high
        case .equals: false
        }
    }
}
