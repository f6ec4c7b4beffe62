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

    /// 10 rules over two sensors of a device (`all` of a temperature and a humidity leaf): a reading on
    /// either matches 10 leaves, as a reading matches 10 single conditions in `ruleFile`.
    static func twoLeafRuleFile() -> String {
        var text = "rules:\n"
        for index in 0..<10 {
            text += """
                  - id: hot-and-humid-\(index)
                    all:
                      - {topic: "bench/sensors/{device}/temperature", above: \(25 + index), clear: \(23 + index)}
                      - {topic: "bench/sensors/{device}/humidity", above: \(60 + index), clear: \(58 + index)}
                    on_fire:
                      - publish: {topic: "bench/actuators/{device}/cooling-\(index)/set", payload: {state: "on"}}
                    on_clear:
                      - publish: {topic: "bench/actuators/{device}/cooling-\(index)/set", payload: {state: "off"}}

                """
        }
        return text
    }

    /// Readings alternating between each sensor's temperature and humidity (random walks around the rules'
    /// thresholds), in the same payload shape as `makeReadings`.
    static func makeTwoSensorReadings(count: Int, sensors: Int) -> [Reading] {
        var generator = SystemRandomNumberGenerator()
        // Temperatures start at 24 °C, humidities at 62 %: both walk across the rules' thresholds.
        var values = (0..<sensors * 2).map { $0 % 2 == 0 ? 24.0 : 62.0 }
        return (0..<count).map { index in
            let sensor = (index / 2) % sensors
            let humidity = index % 2 == 1
            let slot = sensor * 2 + (humidity ? 1 : 0)
            let (low, high) = humidity ? (50.0, 80.0) : (15.0, 40.0)
            values[slot] = min(high, max(low, values[slot] + Double.random(in: -0.8...0.8, using: &generator)))
            let payload =
                "{\"value\":\(Int(values[slot] * 100))e-2,\"unit\":\"C\",\"seq\":\(index / (sensors * 2) + 1),\"sensor\":\"dev-\(sensor)\"}"
            return Reading(
                topic: "bench/sensors/dev-\(sensor)/\(humidity ? "humidity" : "temperature")",
                payload: payload,
                timestamp: Int64(index / 10)
            )
        }
    }

    /// Heap bytes an evaluator holds per instance once `readings` created them (glibc's count of bytes in
    /// use, before and after; the rule set itself is loaded before the first count).
    static func bytesPerInstance(ruleFile: String, readings: [Reading]) throws -> (bytes: Double, instances: Int) {
        let ruleSet = try RuleLoader.load([RuleSource(path: "bench.yaml", text: ruleFile)])
        let before = allocation_counter_heap_bytes_in_use()
        var evaluator = Evaluator(ruleSet: ruleSet)
        var events: [EvaluationEvent] = []
        for reading in readings {
            evaluator.process(reading, into: &events)
            events.removeAll(keepingCapacity: true)
        }
        let after = allocation_counter_heap_bytes_in_use()
        let instances = evaluator.instanceCount
        return withExtendedLifetime(evaluator) { (Double(after - before) / Double(max(1, instances)), instances) }
    }

    /// The same readings `milliseconds` apart.
    static func restamped(_ readings: [Reading], every milliseconds: Int64) -> [Reading] {
        readings.enumerated().map { Reading(topic: $1.topic, payload: $1.payload, timestamp: Int64($0) * milliseconds) }
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
        try measure(
            ruleFile: ruleFile(ruleCount: ruleCount),
            ruleCount: ruleCount,
            readings: readings,
            sensors: sensors,
            runs: runs
        )
    }

    /// Median of `runs` over any rule file; the first `sensors` readings warm each new evaluator.
    static func measure(ruleFile: String, ruleCount: Int, readings: [Reading], sensors: Int, runs: Int) throws -> Result
    {
        let ruleSet = try RuleLoader.load([RuleSource(path: "bench.yaml", text: ruleFile)])
        return measure(ruleSet: ruleSet, ruleCount: ruleCount, readings: readings, sensors: sensors, runs: runs)
    }

    /// Median of `runs` over loaded rules; the first `sensors` readings warm each new evaluator.
    static func measure(ruleSet: RuleSet, ruleCount: Int, readings: [Reading], sensors: Int, runs: Int) -> Result {
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
