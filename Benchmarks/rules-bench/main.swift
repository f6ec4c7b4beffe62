// In-process evaluation throughput of the Rules core: readings/s for 10, 1,000 and 10,000 rules over
// 10,000 sensors. Every reading matches the same 10 rules; the others sit on other topics, so the cost
// per reading must stay flat as rules grow (the topic index makes matching independent of the rule count).
//
//   swift run -c release rules-bench [--readings N] [--runs N]

import Rules

#if canImport(Glibc)
import Glibc
#endif

func ruleFile(ruleCount: Int) -> String {
    var text = "rules:\n"
    for index in 0..<min(10, ruleCount) {
        text += """
              - id: hot-\(index)
                topic: sensors/{device}/temperature
                above: \(25 + index)
                clear: \(23 + index)
                for: 2s
                on_fire:
                  - publish: {topic: "actuators/{device}/cooling-\(index)/set", payload: {state: "on"}}
                on_clear:
                  - publish: {topic: "actuators/{device}/cooling-\(index)/set", payload: {state: "off"}}

            """
    }
    for index in 10..<max(10, ruleCount) {
        text += """
              - id: other-\(index)
                topic: other/{device}/q\(index)
                above: 50
                on_fire:
                  - publish: {topic: "actuators/{device}/q\(index)/set", payload: {state: "on"}}

            """
    }
    return text
}

func makeReadings(count: Int, sensors: Int) -> [Reading] {
    var generator = SystemRandomNumberGenerator()
    var values = [Double](repeating: 25, count: sensors)
    return (0..<count).map { index in
        let sensor = index % sensors
        values[sensor] = min(40, max(15, values[sensor] + Double.random(in: -0.8...0.8, using: &generator)))
        let payload = "{\"value\": \(Int(values[sensor] * 100))e-2, \"unit\": \"C\", \"seq\": \(index / sensors + 1)}"
        return Reading(topic: "sensors/dev-\(sensor)/temperature", payload: payload, timestamp: Int64(index / 10))
    }
}

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

var readingCount = 1_000_000
var runs = 5
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--readings": readingCount = Int(arguments.next() ?? "") ?? readingCount
    case "--runs": runs = Int(arguments.next() ?? "") ?? runs
    default:
        print("usage: rules-bench [--readings N] [--runs N]")
        exit(2)
    }
}

let sensors = 10_000
let readings = makeReadings(count: readingCount, sensors: sensors)
print("Rules core, in process: \(readingCount) readings over \(sensors) sensors, median of \(runs) runs, 1 core")
print("rules    instances  readings/s    ns/reading  actions   vs 10 rules")
var baseline: Double?
for ruleCount in [10, 1_000, 10_000] {
    let ruleSet = try RuleLoader.load([RuleSource(path: "bench.yaml", text: ruleFile(ruleCount: ruleCount))])
    var rates: [Double] = []
    var actions = 0
    var instances = 0
    for _ in 0..<runs {
        var evaluator = Evaluator(ruleSet: ruleSet)
        var events: [EvaluationEvent] = []
        events.reserveCapacity(1024)
        actions = 0
        let start = now()
        for reading in readings {
            evaluator.process(reading, into: &events)
            for event in events { if case .action = event { actions += 1 } }
            events.removeAll(keepingCapacity: true)
        }
        rates.append(Double(readings.count) / (now() - start))
        instances = evaluator.instanceCount
    }
    let median = rates.sorted()[rates.count / 2]
    baseline = baseline ?? median
    let ratio = median / (baseline ?? median)
    print(
        String(ruleCount).padding(8) + " " + String(instances).padding(10) + " " + String(Int(median)).padding(13) + " "
            + String(Int(1e9 / median)).padding(11) + " " + String(actions).padding(9) + " "
            + String(Int(ratio * 100)) + "%"
    )
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
