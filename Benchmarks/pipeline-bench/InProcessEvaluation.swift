import AllocationCounter
import Rules

#if canImport(Glibc)
import Glibc
#endif

/// Scenario 4: the Rules core alone, on one core. Every reading matches the same 10 capture rules; the
/// other rules sit on other topics, so the cost per reading must stay flat as rules grow.
enum InProcessEvaluation {
    struct Result {
        var rules: Int
        var readingsPerSecond: Double
        var allocationsPerReading: Double
        var instances: Int
        var actions: Int
    }

    static func ruleFile(ruleCount: Int) -> String {
        EngineUnderTest.ruleFile(prefix: "bench", ruleCount: ruleCount)
    }

    /// Readings of `sensors` sensors, round robin, each a random walk (`steady`: inside every rule's
    /// hysteresis band, so no transition happens).
    static func makeReadings(count: Int, sensors: Int, steady: Bool) -> [Reading] {
        var generator = SystemRandomNumberGenerator()
        var values = [Double](repeating: 24, count: sensors)
        return (0..<count).map { index in
            let sensor = index % sensors
            if steady {
                values[sensor] = 23.5 + Double(index % 101) / 100
            } else {
                values[sensor] = min(40, max(15, values[sensor] + Double.random(in: -0.8...0.8, using: &generator)))
            }
            let payload =
                "{\"value\":\(Int(values[sensor] * 100))e-2,\"unit\":\"C\",\"seq\":\(index / sensors + 1),\"sensor\":\"dev-\(sensor)\"}"
            return Reading(
                topic: "bench/sensors/dev-\(sensor)/temperature",
                payload: payload,
                timestamp: Int64(index / 10)
            )
        }
    }

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// Median of `runs`; each run warms a new evaluator with one reading per sensor, then times the rest.
    static func measure(ruleCount: Int, readings: [Reading], sensors: Int, runs: Int) throws -> Result {
        let ruleSet = try RuleLoader.load([RuleSource(path: "bench.yaml", text: ruleFile(ruleCount: ruleCount))])
        var rates: [Double] = []
        var allocations: [Double] = []
        var result = Result(rules: ruleCount, readingsPerSecond: 0, allocationsPerReading: 0, instances: 0, actions: 0)
        let timed = readings[sensors...]
        for _ in 0..<runs {
            var evaluator = Evaluator(ruleSet: ruleSet)
            var events: [EvaluationEvent] = []
            events.reserveCapacity(1024)
            for reading in readings[..<sensors] {
                evaluator.process(reading, into: &events)
                events.removeAll(keepingCapacity: true)
            }
            var actions = 0
            let start = now()
            allocation_counter_start()
            for reading in timed {
                evaluator.process(reading, into: &events)
                for event in events { if case .action = event { actions += 1 } }
                events.removeAll(keepingCapacity: true)
            }
            let allocated = allocation_counter_stop()
            rates.append(Double(timed.count) / (now() - start))
            allocations.append(Double(allocated) / Double(timed.count))
            result.instances = evaluator.instanceCount
            result.actions = actions
        }
        result.readingsPerSecond = median(rates)
        result.allocationsPerReading = median(allocations)
        return result
    }
}
