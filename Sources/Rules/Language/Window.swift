import FileFormats

extension Rule {
    /// What a condition compares instead of each reading: a value computed over a window of readings.
    public enum Window: Hashable, Sendable, CustomStringConvertible {
        /// How far back a window reaches: a duration (sliding on the clock) or the last N usable readings.
        public enum Span: Hashable, Sendable, CustomStringConvertible {
            case duration(Int64)
            case readings(Int)

            func isSameKind(as other: Span) -> Bool {
                switch (self, other) {
                case (.duration, .duration), (.readings, .readings): true
                default: false
                }
            }

            public var description: String {
                switch self {
                case .duration(let milliseconds): RuleDuration.format(milliseconds)
                case .readings(let count): "\(count)"
                }
            }
        }

        /// The statistic of `avg`, `min`, `max`, `sum` and `count`.
        public enum Statistic: String, Hashable, Sendable, CaseIterable {
            case avg, min, max, sum, count
        }

        /// `avg: 5m`, `max: 10`, `count: 1m`…
        case statistic(Statistic, Span)
        /// `rate: {per, over}`: (newest − oldest) / their time apart × `per`, over the readings within `over`.
        case rate(perMilliseconds: Int64, overMilliseconds: Int64)
        /// `delta: D`: newest − oldest within D.
        case delta(Int64)
        /// `at_least: M of N` / `at_least: M in D`: the threshold held for at least M readings of the span.
        case atLeast(Int, Span)
        /// `times: M in D`: the threshold *became* true (from false or unknown) at least M times within D; one long
        /// spell counts once, however many readings it sends.
        case times(Int, Int64)

        /// The default of `max_samples`.
        public static let defaultMaxSamples = 10_000

        /// The span the window covers.
        public var span: Span {
            switch self {
            case .statistic(_, let span), .atLeast(_, let span): span
            case .rate(_, let over): .duration(over)
            case .delta(let duration), .times(_, let duration): .duration(duration)
            }
        }

        /// How long a reading stays in a duration window; nil for a window of the last N readings.
        public var durationMilliseconds: Int64? {
            if case .duration(let milliseconds) = span { return milliseconds }
            return nil
        }

        /// Whether `other` is the same kind of window over a span of the same kind with another length.
        func differsOnlyInLength(from other: Window) -> Bool {
            switch (self, other) {
            case (.statistic(let mine, let mySpan), .statistic(let theirs, let theirSpan)):
                return mine == theirs && mySpan.isSameKind(as: theirSpan)
            case (.rate(let myPer, _), .rate(let theirPer, _)): return myPer == theirPer
            case (.delta, .delta): return true
            case (.atLeast(let mine, let mySpan), .atLeast(let theirs, let theirSpan)):
                return mine == theirs && mySpan.isSameKind(as: theirSpan)
            case (.times(let mine, _), .times(let theirs, _)): return mine == theirs
            default: return false
            }
        }

        /// How the rule file says it: `avg 5m`, `rate 1m over 5m`, `at_least 3 of 5`.
        public var description: String {
            switch self {
            case .statistic(let statistic, let span): "\(statistic.rawValue) \(span)"
            case .rate(let per, let over): "rate per \(RuleDuration.format(per)) over \(RuleDuration.format(over))"
            case .delta(let duration): "delta \(RuleDuration.format(duration))"
            case .atLeast(let count, .readings(let total)): "at_least \(count) of \(total)"
            case .atLeast(let count, .duration(let duration)): "at_least \(count) in \(RuleDuration.format(duration))"
            case .times(let count, let duration): "times \(count) in \(RuleDuration.format(duration))"
            }
        }
    }

    /// What a firing instance does when its schedule ends.
    public enum OutsideActive: String, Hashable, Sendable, CaseIterable {
        /// It clears at the schedule's end, with no reading (the default).
        case clear
        /// It keeps firing until its condition clears as usual.
        case hold
    }

    /// Flap detection (`flapping:`), as Nagios and Kapacitor do it: the weighted percentage of changes among
    /// the condition's last `history` results (recent ones weigh more, 0.8 to 1.2).
    public struct FlapDetection: Hashable, Sendable {
        /// The state a flapping instance is held in.
        public enum HeldState: String, Hashable, Sendable, CaseIterable {
            /// Whatever state it was in when it started flapping.
            case hold
            /// Firing (it fires if it was not).
            case fire
            /// Inactive (it clears if it was firing).
            case clear
        }

        /// How many of the condition's most recent results count (2 to 64).
        public var history: Int
        /// At or above this percentage the instance starts flapping…
        public var highPercent: Double
        /// …and below this one it stops.
        public var lowPercent: Double
        public var state: HeldState

        public init(history: Int, lowPercent: Double, highPercent: Double, state: HeldState) {
            self.history = history
            self.lowPercent = lowPercent
            self.highPercent = highPercent
            self.state = state
        }
    }
}
