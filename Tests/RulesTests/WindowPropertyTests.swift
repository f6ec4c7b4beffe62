import PropertyBased
import Testing

@testable import Rules

/// Every incremental window (running sums, monotonic deques, the samples deque) against a naive
/// recomputation from the readings it should hold, over random streams and random query times.
@Suite("Windows against a naive recomputation")
struct WindowPropertyTests {
    static let windows: [Rule.Window] = [
        .statistic(.avg, .duration(5000)), .statistic(.avg, .readings(4)), .statistic(.min, .duration(5000)),
        .statistic(.min, .readings(3)), .statistic(.max, .duration(3000)), .statistic(.max, .readings(5)),
        .statistic(.sum, .duration(4000)), .statistic(.sum, .readings(2)), .statistic(.count, .duration(2000)),
        .rate(perMilliseconds: 1000, overMilliseconds: 6000), .delta(4000), .atLeast(2, .readings(4)),
        .atLeast(3, .duration(5000)), .times(2, 5000),
    ]

    /// The window's value from the readings (time, value), oldest first, at `time`, as the contract says.
    static func naive(_ window: Rule.Window, _ readings: [(Int64, Double)], at time: Int64, cap: Int) -> Double? {
        var inside: [(Int64, Double)]
        switch window.span {
        case .duration(let duration): inside = readings.filter { $0.0 + duration >= time }
        case .readings(let count): inside = Array(readings.suffix(count))
        }
        // `max_samples` keeps the newest readings; while a dropped one would still be inside a duration window, its
        // value is unknown (it would be wrong).
        if case .duration = window.span, inside.count > cap, !isTimes(window) { return nil }
        inside = Array(inside.suffix(cap))
        let values = inside.map(\.1)
        switch window {
        case .statistic(.count, _): return Double(values.count)
        case .statistic(let statistic, let span):
            if case .readings(let needed) = span, values.count < needed { return nil }
            guard !values.isEmpty else { return nil }
            switch statistic {
            case .avg: return values.reduce(0, +) / Double(values.count)
            case .sum: return values.reduce(0, +)
            case .min: return values.min()
            case .max: return values.max()
            case .count: return Double(values.count)
            }
        case .rate(let per, let over):
            guard let first = inside.first, let last = inside.last, inside.count >= 2 else { return nil }
            let span = last.0 - first.0
            guard span > 0, span * 2 >= over else { return nil }
            return (last.1 - first.1) / Double(span) * Double(per)
        case .delta:
            guard let first = inside.first, let last = inside.last, inside.count >= 2 else { return nil }
            return last.1 - first.1
        case .atLeast(_, .readings(let needed)):
            return values.count < needed ? nil : values.reduce(0, +)
        case .atLeast(_, .duration):
            return values.isEmpty ? nil : values.reduce(0, +)
        case .times(_, let duration):
            // The readings that turned it true (1 after anything else, or first), within the duration.
            let turns = readings.indices.filter { readings[$0].1 == 1 && ($0 == 0 || readings[$0 - 1].1 != 1) }
            let within = turns.map { readings[$0].0 }.filter { $0 + duration >= time }
            return within.count > cap ? nil : Double(within.count)
        }
    }

    static func isTimes(_ window: Rule.Window) -> Bool {
        if case .times = window { true } else { false }
    }

    @Test func everyWindowAgreesWithTheNaiveRecomputation() async {
        await propertyCheck(
            count: 600,
            input: Gen.int(in: 0...(Self.windows.count - 1)),
            Gen.int(in: 2...8),
            Gen.int(in: 0...100_000).array(of: 1...150)
        ) { windowIndex, cap, seeds in
            let window = Self.windows[windowIndex]
            let isAtLeast =
                switch window {
                case .atLeast, .times: true
                default: false
                }
            var state = WindowState()
            var readings: [(Int64, Double)] = []
            var time: Int64 = 0
            for seed in seeds {
                // Readings in time order, several in one millisecond, gaps longer than the window; every third
                // step a query without a reading (the clock moving on).
                time += Int64([0, 1, 250, 999, 1000, 1001, 2500, 7000][seed % 8])
                let value = isAtLeast ? Double(seed / 8 % 2) : Double(seed / 8 % 200) - 100 + 0.25
                if seed % 3 != 0 {
                    state.insert(WindowState.Sample(time: time, value: value), window: window, maxSamples: cap)
                    readings.append((time, value))
                }
                state.expire(at: time, window: window)
                let expected = Self.naive(window, readings, at: time, cap: cap)
                let actual = state.value(of: window)
                let agrees =
                    switch (actual, expected) {
                    case (nil, nil): true
                    case (let actual?, let expected?): abs(actual - expected) <= 1e-9 * max(1, abs(expected))
                    default: false
                    }
                #expect(
                    agrees,
                    "\(window) at \(time): \(String(describing: actual)) vs \(String(describing: expected))"
                )
                if !agrees { return }
            }
        }
    }

    /// A window's next expiry is the moment its oldest reading leaves: one millisecond after `t + D`.
    @Test func theNextExpiryIsWhenTheOldestReadingLeaves() {
        var state = WindowState()
        let window = Rule.Window.statistic(.avg, .duration(1000))
        state.insert(WindowState.Sample(time: 10, value: 1), window: window, maxSamples: 100)
        state.insert(WindowState.Sample(time: 500, value: 2), window: window, maxSamples: 100)
        #expect(state.nextExpiry(of: window) == 1011)
        state.expire(at: 1010, window: window)
        #expect(state.samples.count == 2)
        state.expire(at: 1011, window: window)
        #expect(state.samples.count == 1)
        #expect(state.nextExpiry(of: window) == 1501)
        #expect(WindowState().nextExpiry(of: window) == nil)
    }
}
