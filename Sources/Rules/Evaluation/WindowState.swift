import DequeModule
import FileFormats

/// The readings in one condition's window and its running aggregate: amortised O(1) per reading for every
/// window kind (a running sum, a monotonic deque for `min`/`max`, the samples in arrival order for expiry).
public struct WindowState: Sendable, Hashable {
    /// One usable reading in the window: its time and value (for `at_least`, 1 when it passed the threshold).
    public struct Sample: Sendable, Hashable, Codable {
        public var time: Int64
        public var value: Double

        public init(time: Int64, value: Double) {
            self.time = time
            self.value = value
        }
    }

    /// A sample that may still be the window's minimum or maximum, and its position in arrival order.
    struct Extreme: Sendable, Hashable {
        var ordinal: Int64
        var value: Double
    }

    /// The usable readings in the window, oldest first.
    public private(set) var samples = Deque<Sample>()
    /// For `min` (ascending) or `max` (descending): the samples that can still be the answer.
    private var extremes = Deque<Extreme>()
    /// The sum of `samples`' values (for `avg`, `sum`, and the holding count of `at_least`).
    private var sum = 0.0
    /// Removals since `sum` was last recomputed from the samples (bounds the drift of adding and subtracting).
    private var removalsSinceExactSum = 0
    /// How many readings ever entered (the ordinal of the next one).
    private var entered: Int64 = 0
    /// Readings dropped because the window reached `max_samples`.
    public private(set) var droppedSamples = 0
    /// The time of the newest reading dropped for `max_samples` while it may still be inside the window: until
    /// it leaves, the window's value would leave it out, so it is unknown.
    public private(set) var lastDroppedAt: Int64?
    /// For `times`: whether the last usable reading passed the threshold (nil before the first), so that only a
    /// reading that turns it true enters the window.
    public private(set) var lastPassed: Bool?

    public init() {}

    /// A window that holds `samples` (restored from a snapshot), in order.
    public init(
        samples: [Sample],
        droppedSamples: Int,
        lastPassed: Bool? = nil,
        lastDroppedAt: Int64? = nil,
        window: Rule.Window
    ) {
        for sample in samples { append(sample, window: window, maxSamples: .max) }
        self.droppedSamples = droppedSamples
        self.lastPassed = lastPassed
        self.lastDroppedAt = lastDroppedAt
    }

    /// Takes in one usable reading at `time` (not before the previous one's). For `times`, `sample.value` is 1
    /// when the reading passes the threshold, and only a reading that turns it true enters.
    public mutating func insert(_ sample: Sample, window: Rule.Window, maxSamples: Int) {
        if case .times = window {
            let passed = sample.value != 0
            defer { lastPassed = passed }
            guard passed, lastPassed != true else { return }
        }
        append(sample, window: window, maxSamples: maxSamples)
    }

    private mutating func append(_ sample: Sample, window: Rule.Window, maxSamples: Int) {
        let ordinal = entered
        entered += 1
        samples.append(sample)
        sum += sample.value
        switch window {
        case .statistic(.min, _):
            while let last = extremes.last, last.value >= sample.value { extremes.removeLast() }
            extremes.append(Extreme(ordinal: ordinal, value: sample.value))
        case .statistic(.max, _):
            while let last = extremes.last, last.value <= sample.value { extremes.removeLast() }
            extremes.append(Extreme(ordinal: ordinal, value: sample.value))
        default: break
        }
        let limit: Int
        if case .readings(let count) = window.span { limit = min(count, maxSamples) } else { limit = maxSamples }
        while samples.count > limit {
            let dropped = samples.first?.time
            removeOldest()
            if case .duration = window.span {
                droppedSamples += 1
                lastDroppedAt = dropped
            }
        }
    }

    /// Drops the readings that left a duration window by `time`: a reading at `t` is inside until `t + D`.
    public mutating func expire(at time: Int64, window: Rule.Window) {
        guard let duration = window.durationMilliseconds else { return }
        while let first = samples.first, first.time + duration < time { removeOldest() }
        if let dropped = lastDroppedAt, dropped + duration < time { lastDroppedAt = nil }
    }

    private mutating func removeOldest() {
        let removed = samples.removeFirst()
        removalsSinceExactSum += 1
        if samples.isEmpty {
            sum = 0
            removalsSinceExactSum = 0
        } else if removalsSinceExactSum > max(samples.count, 64) {
            sum = samples.reduce(0) { $0 + $1.value }
            removalsSinceExactSum = 0
        } else {
            sum -= removed.value
        }
        let firstOrdinal = entered - Int64(samples.count)
        while let first = extremes.first, first.ordinal < firstOrdinal { extremes.removeFirst() }
    }

    /// Drops what left the window by `time`, then returns its value (nil while unknown).
    public mutating func value(at time: Int64, of window: Rule.Window) -> Double? {
        expire(at: time, window: window)
        return value(of: window)
    }

    /// The window's value (after `expire`): nil while it is unknown.
    public func value(of window: Rule.Window) -> Double? {
        // A reading dropped for `max_samples` is still inside the window: any value would be wrong.
        guard lastDroppedAt == nil else { return nil }
        let count = samples.count
        switch window {
        case .statistic(.count, _):
            return Double(count)
        case .statistic(let statistic, let span):
            if case .readings(let needed) = span, count < needed { return nil }
            guard count > 0 else { return nil }
            switch statistic {
            case .avg: return sum / Double(count)
            case .sum: return sum
            case .min, .max: return extremes.first?.value
            case .count: return Double(count)
            }
        case .rate(let per, let over):
            guard count >= 2, let first = samples.first, let last = samples.last else { return nil }
            let span = last.time - first.time
            guard span > 0, span * 2 >= over else { return nil }
            return (last.value - first.value) / Double(span) * Double(per)
        case .delta:
            guard count >= 2, let first = samples.first, let last = samples.last else { return nil }
            return last.value - first.value
        case .atLeast(_, .readings(let needed)):
            return count < needed ? nil : sum.rounded()
        case .atLeast(_, .duration):
            return count == 0 ? nil : sum.rounded()
        case .times:
            return Double(count)
        }
    }

    /// Why the value is unknown (after `expire`), for people.
    public func unknownReason(of window: Rule.Window) -> String {
        if lastDroppedAt != nil {
            return "max_samples was reached: readings inside the window were dropped (raise max_samples)"
        }
        return switch window {
        case .statistic(_, .readings(let needed)), .atLeast(_, .readings(let needed)):
            "\(samples.count) of the \(needed) readings it needs"
        case .rate(_, let over) where samples.count >= 2:
            "its readings span less than half of \(RuleDuration.format(over))"
        case .rate, .delta: "fewer than two readings in the window"
        default: "no reading in the window"
        }
    }

    /// When the next reading leaves a duration window, or a reading dropped for `max_samples` would (the value is
    /// known again then); nil when none will.
    public func nextExpiry(of window: Rule.Window) -> Int64? {
        guard let duration = window.durationMilliseconds else { return nil }
        let next = [samples.first?.time, lastDroppedAt].compactMap { $0 }.min()
        return next.map { $0 + duration + 1 }
    }
}
