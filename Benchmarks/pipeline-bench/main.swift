// pipeline-bench: every performance figure of the pipeline in one run, side by side with the broker's
// own ceiling and a Python peer, against a private mosquitto on loopback. See docs/performance.md.
//
//   swift run -c release pipeline-bench [--smoke] [--json FILE] [--runs N] [--skip-peer] [--only 1,2,...]
//
// Scenarios: 1 broker ceiling, 2 engine throughput, 3 latency, 4 in process, 5 memory, 6 simulator,
// 7 Python peer, 8 decisions (CPU per transition beside a C engine and the peer; the storm), 9 scale-out ingest
// (readings into nats-server's MQTT listener and a JetStream stream, beside mosquitto).

import Foundation
import MQTTTestSupport
import Rules

#if canImport(Glibc)
import Glibc
import MQTT
#endif

var smoke = false
var jsonPath: String?
var runs = 3
var skipPeer = false
var only: Set<Int>?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--smoke": smoke = true
    case "--json": jsonPath = arguments.next()
    case "--runs": runs = Int(arguments.next() ?? "") ?? runs
    case "--skip-peer": skipPeer = true
    case "--only": only = Set((arguments.next() ?? "").split(separator: ",").compactMap { Int($0) })
    default:
        say("usage: pipeline-bench [--smoke] [--json FILE] [--runs N] [--skip-peer] [--only 1,2,...]")
        exit(2)
    }
}
if smoke { runs = 1 }
for product in ["mqtt-load", "rules-engine", "sensor-sim"]
where !FileManager.default.fileExists(atPath: builtProductPath(product)) {
    say("missing \(builtProductPath(product)): build with `swift build -c release` first")
    exit(2)
}

let sizes = (
    qos0: smoke ? 2_000 : 200_000, qos1: smoke ? 1_000 : 100_000, topics: 1_000,
    latencySeconds: smoke ? 1.0 : 5.0, latencyRate: smoke ? 2_000.0 : 10_000.0,
    inProcessReadings: smoke ? 20_000 : 1_000_000, inProcessSensors: smoke ? 1_000 : 10_000,
    ruleCounts: smoke ? [10, 1_000] : [10, 1_000, 10_000], memorySensors: smoke ? 1_000 : 10_000,
    simulatorSeconds: smoke ? 1 : 5, simulatorReplicas: smoke ? 50 : 5_000
)
let started = ContinuousClock.now
let report = Report()
let broker = try await TestBroker()
@MainActor func prefix() -> String { "bench\(UInt32.random(in: 0...UInt32.max))" }
@MainActor func count(qos: Int) -> Int { qos == 0 ? sizes.qos0 : sizes.qos1 }
@MainActor func want(_ scenario: Int) -> Bool { only?.contains(scenario) ?? true }

say("pipeline-bench\(smoke ? " (smoke)" : ""): mosquitto on 127.0.0.1:\(broker.port), median of \(runs) run(s)")
say("  #  " + "figure".padded(48) + "value".padded(12, left: true) + " " + "unit".padded(12) + " target / comparison")

// 1. Broker ceiling: the raw publisher and subscriber, no pipeline code.
for qos in [0, 1] where want(1) || want(2) {
    var rates: [Double] = []
    for _ in 0..<runs {
        let topic = prefix()
        let result = try await runLoad([
            "throughput", "\(broker.port)", "\(qos)", "\(count(qos: qos))", "\(sizes.topics)", topic,
            "\(topic)/sensors/+/temperature", "\(count(qos: qos))",
        ])
        rates.append((result["received"] ?? 0) / max(result["seconds"] ?? 1, 1e-9))
    }
    report.add(1, "broker ceiling, QoS \(qos)", median(rates), "msg/s", "raw libmosquitto pub -> sub")
}

/// Readings/s an engine fully evaluated from the raw publisher (a sentinel reading closes the run).
@MainActor func engineThroughput(_ engine: EngineUnderTest, qos: Int) async throws -> (rate: Double, lost: Int) {
    var rates: [Double] = []
    var lost = 0
    for _ in 0..<runs {
        let process = try await engine.start()
        let result = try await runLoad([
            "throughput", "\(engine.broker.port)", "\(qos)", "\(count(qos: qos))", "\(sizes.topics)", engine.prefix,
            "\(engine.prefix)/actuators/sentinel/#", "0",
        ])
        let evaluated = await EngineUnderTest.stop(process) - 1
        guard (result["received"] ?? 0) >= 1 else { throw BenchError("\(engine.name) never answered the sentinel") }
        rates.append(Double(evaluated) / max(result["seconds"] ?? 1, 1e-9))
        lost = max(lost, count(qos: qos) - evaluated)
    }
    return (median(rates), lost)
}

// 2. Engine throughput, against the ceiling measured above.
var engineRates: [Int: Double] = [:]
for qos in [0, 1] where want(2) || want(3) || want(7) {
    let engine = EngineUnderTest(kind: .ours, broker: broker, prefix: prefix(), ruleCount: 1_000)
    let (rate, lost) = try await engineThroughput(engine, qos: qos)
    engineRates[qos] = rate
    let ceiling = report.value("broker ceiling, QoS \(qos)") ?? 0
    report.add(
        2,
        "rules-engine, 1,000 rules, QoS \(qos)",
        rate,
        "readings/s",
        "\(ratio(rate, ceiling)) broker (target ≥ 0.90×)\(lost > 0 ? "; \(lost) not delivered to it" : "")"
    )
}

/// Sensor -> command latency through an engine (or pub -> sub through the broker when `engine` is nil).
@MainActor func latency(_ engine: EngineUnderTest?, rate: Double) async throws -> [String: Double] {
    let process = try await engine?.start()
    defer { if let process { process.signal(SIGKILL) } }
    let topic = engine?.prefix ?? prefix()
    let result = try await runLoad([
        "latency", "\(broker.port)", "0", "\(Int(rate))", "\(sizes.latencySeconds)", "\(sizes.topics)", topic,
        engine == nil ? "broker" : "engine",
    ])
    if let process {
        _ = await EngineUnderTest.stop(process)
    }
    return result
}

@MainActor func addLatency(
    _ scenario: Int,
    _ label: String,
    _ result: [String: Double],
    _ note: (Double) -> String = { _ in "" }
) {
    let p99 = (result["p99_us"] ?? 0) / 1000
    report.add(scenario, "\(label) p50", (result["p50_us"] ?? 0) / 1000, "ms")
    report.add(scenario, "\(label) p99", p99, "ms", note(p99))
    report.add(
        scenario,
        "\(label) p99.9",
        (result["p999_us"] ?? 0) / 1000,
        "ms",
        "\(Int(result["samples"] ?? 0)) samples"
    )
}

// 3. Latency at 10k readings/s and at half the engine's maximum, next to the broker's own pub -> sub.
let halfMaximum = max(1_000, min((engineRates[0] ?? 0) / 2, 200_000))
var ourLatencyP99: Double = 0
for rate in smoke ? [sizes.latencyRate] : [sizes.latencyRate, halfMaximum.rounded()] where want(3) || want(7) {
    let direct = try await latency(nil, rate: rate)
    let brokerP99 = (direct["p99_us"] ?? 0) / 1000
    addLatency(3, "broker pub->sub @\(Int(rate))/s", direct)
    let engine = EngineUnderTest(kind: .ours, broker: broker, prefix: prefix(), ruleCount: 1_000)
    let through = try await latency(engine, rate: rate)
    addLatency(3, "sensor->command @\(Int(rate))/s", through) { p99 in
        if rate == sizes.latencyRate { ourLatencyP99 = p99 }
        return String(format: "target ≤ 2×broker+0.3 = %.2f ms", 2 * brokerP99 + 0.3)
    }
}

// 4. The Rules core in process. Each run measures every rule count in turn, so that all see the same machine;
// the flatness is the median of the runs' ratios to 10 rules.
let inProcessRuleSets =
    want(4)
    ? try sizes.ruleCounts.map { count in
        try RuleLoader.load([RuleSource(path: "bench.yaml", text: InProcessEvaluation.ruleFile(ruleCount: count))])
    } : []
for steady in [false, true] where want(4) {
    let readings = InProcessEvaluation.makeReadings(
        count: sizes.inProcessReadings,
        sensors: sizes.inProcessSensors,
        steady: steady
    )
    var results = [[InProcessEvaluation.Result]](repeating: [], count: sizes.ruleCounts.count)
    for _ in 0..<runs {
        for (position, ruleCount) in sizes.ruleCounts.enumerated() {
            results[position].append(
                InProcessEvaluation.measure(
                    ruleSet: inProcessRuleSets[position],
                    ruleCount: ruleCount,
                    readings: readings,
                    sensors: sizes.inProcessSensors,
                    runs: 1
                )
            )
        }
    }
    for (position, ruleCount) in sizes.ruleCounts.enumerated() {
        let rates = results[position].map(\.readingsPerSecond)
        let flatness = median(zip(rates, results[0].map(\.readingsPerSecond)).map { $0 / $1 })
        let workload = steady ? "no transitions" : "random walk"
        report.add(
            4,
            "in process, \(ruleCount) rules, \(workload)",
            median(rates),
            "readings/s",
            String(format: "%.2f×", flatness)
                + " of 10 rules (median of \(runs) runs in turn); target ≥ 2,000,000, flat within 20 %"
        )
        let result = results[position][0]
        report.add(
            4,
            "  allocations per reading, \(ruleCount) rules, \(workload)",
            median(results[position].map(\.allocationsPerReading)),
            "allocs",
            "target ≤ 1 (\(result.actions) actions, \(result.instances) instances)"
        )
    }
}

// 4b. The same with 100 sensors, whose 1,000 instances stay in the CPU cache: the gap to the figures above
// is what memory access costs (docs/performance.md).
if want(4) {
    let readings = InProcessEvaluation.makeReadings(count: sizes.inProcessReadings, sensors: 100, steady: true)
    let result = try InProcessEvaluation.measure(ruleCount: 1_000, readings: readings, sensors: 100, runs: runs)
    report.add(
        4,
        "in process, 1000 rules, 100 sensors (cache-resident)",
        result.readingsPerSecond,
        "readings/s",
        "no transitions; \(result.instances) instances"
    )
}

// 4c. Rules over two sensors (`all` of two leaves) beside single conditions, at 10 matching leaves per reading
// either way: the cost per matching leaf, and the heap bytes per instance.
for sensors in [sizes.inProcessSensors, 100] where want(4) {
    let cached = sensors == 100 ? ", 100 devices (cache-resident)" : ""
    let singleReadings = InProcessEvaluation.makeReadings(
        count: sizes.inProcessReadings,
        sensors: sensors,
        steady: false
    )
    let twoSensorReadings = InProcessEvaluation.makeTwoSensorReadings(count: sizes.inProcessReadings, sensors: sensors)
    // One run of each in turn, so that both see the same machine; the ratio is the median of the pairs'.
    var singles: [InProcessEvaluation.Result] = []
    var twoLeaves: [InProcessEvaluation.Result] = []
    for _ in 0..<runs {
        singles.append(
            try InProcessEvaluation.measure(ruleCount: 10, readings: singleReadings, sensors: sensors, runs: 1)
        )
        twoLeaves.append(
            try InProcessEvaluation.measure(
                ruleFile: InProcessEvaluation.twoLeafRuleFile(),
                ruleCount: 10,
                readings: twoSensorReadings,
                sensors: sensors * 2,
                runs: 1
            )
        )
    }
    let single = singles[0]
    let twoLeaf = twoLeaves[0]
    let costRatio = median(zip(singles, twoLeaves).map { $0.readingsPerSecond / $1.readingsPerSecond })
    report.add(
        4,
        "in process, 10 single-condition rules\(cached)",
        median(singles.map(\.readingsPerSecond)),
        "readings/s",
        "10 matching leaves per reading; \(single.actions) actions"
    )
    report.add(
        4,
        "in process, 10 two-leaf rules (all)\(cached)",
        median(twoLeaves.map(\.readingsPerSecond)),
        "readings/s",
        String(format: "%.2f×", costRatio)
            + " the cost per matching leaf of single conditions (median of \(runs) pairs run in turn; goal ≤ 1.5×); "
            + "\(twoLeaf.actions) actions, \(median(twoLeaves.map(\.allocationsPerReading))) allocs/reading"
    )
    guard sensors == sizes.inProcessSensors else { continue }
    let singleMemory = try InProcessEvaluation.bytesPerInstance(
        ruleFile: InProcessEvaluation.ruleFile(ruleCount: 10),
        readings: InProcessEvaluation.makeReadings(count: sensors, sensors: sensors, steady: true)
    )
    let twoLeafMemory = try InProcessEvaluation.bytesPerInstance(
        ruleFile: InProcessEvaluation.twoLeafRuleFile(),
        readings: Array(twoSensorReadings.prefix(sensors * 2))
    )
    report.add(
        4,
        "  heap bytes per instance, single condition",
        singleMemory.bytes,
        "bytes",
        "\(singleMemory.instances) instances (with routes and seq memory)"
    )
    report.add(
        4,
        "  heap bytes per instance, two leaves (all)",
        twoLeafMemory.bytes,
        "bytes",
        "\(twoLeafMemory.instances) instances; \(ratio(twoLeafMemory.bytes, singleMemory.bytes)) of a single condition"
    )
}

// 4d. Windows: the same 10 rules on a 5-minute average (`avg: 5m`) beside the plain ones, over 1,000 sensors
// read every 10 s (30 readings per window; the windows slide through the run), side by side in one run.
if want(4) {
    let sensors = 1_000
    let readings = InProcessEvaluation.restamped(
        InProcessEvaluation.makeReadings(count: sizes.inProcessReadings, sensors: sensors, steady: false),
        every: 10
    )
    let plainFile = InProcessEvaluation.ruleFile(ruleCount: 10)
    let averagedFile = plainFile.replacing("    above: ", with: "    avg: 5m\n    above: ")
    let plain = try InProcessEvaluation.measure(
        ruleFile: plainFile,
        ruleCount: 10,
        readings: readings,
        sensors: sensors,
        runs: runs
    )
    let averaged = try InProcessEvaluation.measure(
        ruleFile: averagedFile,
        ruleCount: 10,
        readings: readings,
        sensors: sensors,
        runs: runs
    )
    report.add(4, "in process, 10 rules, 1000 sensors, plain", plain.readingsPerSecond, "readings/s")
    report.add(
        4,
        "in process, 10 rules on avg: 5m, 1000 sensors",
        averaged.readingsPerSecond,
        "readings/s",
        "\(ratio(plain.readingsPerSecond, averaged.readingsPerSecond)) the cost of plain rules; "
            + "\(averaged.allocationsPerReading) allocs/reading, \(averaged.actions) actions"
    )
}

// 5. Engine memory with 10,000 sensors x 1,000 rules (100,000 instances), and where it goes: the engine before any
// reading with 10 and with 1,000 rules (the difference is the rules' cost), then what the instances add.
if want(5) {
    var baselines: [Int: Double] = [:]
    var baselineSplit: (anonymous: Double, file: Double) = (0, 0)
    var breakdown: [(part: String, megabytes: Double)] = []
    for ruleCount in [10, 1_000] {
        let idle = try await EngineUnderTest(kind: .ours, broker: broker, prefix: prefix(), ruleCount: ruleCount)
            .start()
        baselines[ruleCount] = peakResidentMegabytes(idle.pid)
        baselineSplit = (statusMegabytes(idle.pid, "RssAnon"), statusMegabytes(idle.pid, "RssFile"))
        breakdown = residentBreakdown(idle.pid)
        _ = await EngineUnderTest.stop(idle)
    }
    let engine = EngineUnderTest(kind: .ours, broker: broker, prefix: prefix(), ruleCount: 1_000)
    let process = try await engine.start()
    _ = try await runLoad([
        "throughput", "\(broker.port)", "1", "\(sizes.memorySensors * 2)", "\(sizes.memorySensors)", engine.prefix,
        "\(engine.prefix)/actuators/sentinel/#", "0",
    ])
    let peak = peakResidentMegabytes(process.pid)
    let anonymousAfter = statusMegabytes(process.pid, "RssAnon")
    _ = await EngineUnderTest.stop(process)
    let instances =
        process.standardError.split(separator: "\n").last { $0.contains("instances=") }
        .flatMap { line in line.range(of: "instances=").map { Int(line[$0.upperBound...].prefix { $0.isNumber }) ?? 0 }
        }
        ?? 0
    let before = baselines[1_000] ?? 0
    report.add(5, "engine peak RSS, \(instances) instances", peak, "MB", "target ≤ 35 MB (the issue's goal)")
    report.add(5, "  engine before any reading, 1,000 rules", before, "MB", "target ≤ 22 MB")
    report.add(
        5,
        "    of which the engine's own memory (RssAnon)",
        baselineSplit.anonymous,
        "MB",
        "heap, stacks, written data; the rest is pages of code (RssFile \(String(format: "%.1f", baselineSplit.file)) MB)"
    )
    report.add(
        5,
        "    resident by mapping, 1,000 rules",
        breakdown.reduce(0) { $0 + $1.megabytes },
        "MB",
        breakdown.map { "\($0.part) \(String(format: "%.1f", $0.megabytes))" }.joined(separator: ", ")
    )
    report.add(5, "  engine before any reading, 10 rules", baselines[10] ?? 0, "MB", "the runtime and libraries")
    report.add(
        5,
        "  per rule",
        (before - (baselines[10] ?? 0)) * 1_048_576 / 990,
        "bytes",
        "parsed rule, routes, subscriptions"
    )
    report.add(
        5,
        "  per instance",
        (peak - before) * 1_048_576 / Double(max(instances, 1)),
        "bytes",
        "target ≤ 128 (RSS growth over the instances, with the seq memory per topic)"
    )
    report.add(
        5,
        "  per instance, the engine's own memory",
        (anonymousAfter - baselineSplit.anonymous) * 1_048_576 / Double(max(instances, 1)),
        "bytes",
        "RssAnon growth over the instances (the instance, its route and label index)"
    )
}

// 6. The simulator.
if want(6) {
    let devices = repositoryRoot + "/Devices/server-room.yaml"  // two devices per replica
    var rates: [Double] = []
    for _ in 0..<runs {
        let process = try ChildProcess(
            builtProductPath("sensor-sim"),
            [
                "run", devices, "--broker", broker.url.description, "--replicas", "\(sizes.simulatorReplicas)",
                "--rate", "100",
                "--duration", "\(sizes.simulatorSeconds)s", "--qos", "0",
            ]
        )
        try await process.waitForLine("ready")
        _ = await process.waitForExit()
        let published =
            process.standardError.split(separator: "\n").last { $0.hasPrefix("published ") }
            .flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        rates.append(Double(published) / Double(sizes.simulatorSeconds))
    }
    let devicesSimulated = sizes.simulatorReplicas * 2
    report.add(
        6,
        "sensor-sim, \(devicesSimulated) devices asking 100 Hz, QoS 0",
        median(rates),
        "readings/s",
        "target ≥ 100,000"
    )
    let process = try ChildProcess(
        builtProductPath("sensor-sim"),
        [
            "run", devices, "--broker", broker.url.description, "--replicas", "\(sizes.simulatorReplicas)", "--rate",
            "1",
            "--qos", "0",
        ]
    )
    try await process.waitForLine("ready")
    try await Task.sleep(for: .seconds(1))  // the first interval's spread settles
    let before = cpuSeconds(process.pid)
    let start = ContinuousClock.now
    try await Task.sleep(for: .seconds(sizes.simulatorSeconds))
    let load = (cpuSeconds(process.pid) - before) / seconds(ContinuousClock.now - start)
    process.signal(SIGTERM)
    _ = await process.waitForExit()
    report.add(6, "sensor-sim, \(devicesSimulated) devices at 1 Hz", load, "cores", "target ≤ 1")
}

// 7. The Python peer, same rules, same publisher.
if !want(7) {
} else if skipPeer {
    say("  7  python peer skipped (--skip-peer)")
} else {
    let (python, problem) = await peerPython()
    if let python {
        for qos in [0, 1] {
            let peer = EngineUnderTest(kind: .peer(python: python), broker: broker, prefix: prefix(), ruleCount: 1_000)
            let (rate, lost) = try await engineThroughput(peer, qos: qos)
            report.add(
                7,
                "python peer, 1,000 rules, QoS \(qos)",
                rate,
                "readings/s",
                "ours \(ratio(engineRates[qos] ?? 0, rate)) (target ≥ 2×)\(lost > 0 ? "; \(lost) not delivered to it" : "")"
            )
        }
        let peer = EngineUnderTest(kind: .peer(python: python), broker: broker, prefix: prefix(), ruleCount: 1_000)
        addLatency(
            7,
            "python peer sensor->command @\(Int(sizes.latencyRate))/s",
            try await latency(peer, rate: sizes.latencyRate)
        ) {
            p99 in "ours \(ratio(ourLatencyP99, p99)) (target ≤ 0.5×)"
        }
    } else {
        say("  7  python peer skipped: \(problem ?? "no python")")
    }
}

// 8. Decisions: the CPU a transition costs (a command at QoS 1, its log line, its announcement, its desired
// state), from /proc/PID/stat, on the same paced stream with and without transitions, ours beside the peer;
// then a storm (30,000 readings/s over 10,000 sensors, 2 of 3 readings flip an instance): how long after the
// last reading the last command arrives, and the engine's peak memory.
/// CPU seconds an engine spent on one paced stream, and what mqtt-load saw.
@MainActor func stormCPU(
    _ engine: EngineUnderTest,
    rate: Double,
    seconds: Double,
    sensors: Int,
    transitions: Bool
) async throws -> (cpu: Double, load: [String: Double], peakMB: Double) {
    let process = try await engine.start()
    let before = cpuSeconds(process.pid)
    let load = try await runLoad([
        "storm", "\(engine.broker.port)", "0", "\(Int(rate))", "\(seconds)", "\(sensors)", engine.prefix,
        transitions ? "transitions" : "steady",
    ])
    let cpu = cpuSeconds(process.pid) - before
    let peak = peakResidentMegabytes(process.pid)
    _ = await EngineUnderTest.stop(process)
    return (cpu, load, peak)
}

if want(8) {
    let (python, problem) = skipPeer ? (nil, "--skip-peer") : await peerPython()
    let rate = smoke ? 2_000.0 : 10_000.0
    let duration = smoke ? 0.5 : 3.0
    var perTransition: [String: Double] = [:]
    var perReading: [String: Double] = [:]
    for kind in [EngineUnderTest.Kind.ours, .floor] + (python.map { [.peer(python: $0)] } ?? []) {
        var steadyRuns: [Double] = []
        var flipRuns: [Double] = []
        var transitions = 0.0
        var readings = 0.0
        for _ in 0..<runs {
            let engine = EngineUnderTest(kind: kind, broker: broker, prefix: prefix(), ruleCount: 1_000)
            let steady = try await stormCPU(engine, rate: rate, seconds: duration, sensors: 1_000, transitions: false)
            let flipping = try await stormCPU(
                EngineUnderTest(kind: kind, broker: broker, prefix: prefix(), ruleCount: 1_000),
                rate: rate,
                seconds: duration,
                sensors: 1_000,
                transitions: true
            )
            readings = flipping.load["sent"] ?? 1
            transitions = flipping.load["expected"] ?? 1
            if (flipping.load["received"] ?? 0) < transitions {
                say(
                    "  8  \(engine.name): \(Int(flipping.load["received"] ?? 0)) of \(Int(transitions)) commands arrived"
                )
            }
            steadyRuns.append(steady.cpu / max(steady.load["sent"] ?? 1, 1))
            flipRuns.append(flipping.cpu)
        }
        let name = EngineUnderTest(kind: kind, broker: broker, prefix: "", ruleCount: 0).name
        let steadyPerReading = median(steadyRuns)
        let flipCPU = median(flipRuns)
        perReading[name] = flipCPU / max(readings, 1)
        perTransition[name] = max(0, flipCPU - steadyPerReading * readings) / max(transitions, 1)
        report.add(
            8,
            "\(name): CPU, \(Int(readings)) readings, \(Int(transitions)) commands",
            flipCPU,
            "s",
            "1,000 sensors at \(Int(rate))/s; with no transitions \(String(format: "%.1f", steadyPerReading * 1e6)) µs/reading"
        )
        report.add(
            8,
            "  \(name): CPU per transition",
            (perTransition[name] ?? 0) * 1e6,
            "µs",
            name == "rules-engine"
                ? "its command (QoS 1), log line, desired state; target ≤ 8 µs"
                : name == "python peer"
                    ? "its command (QoS 1)" : "its command (QoS 1) from the message callback: the floor"
        )
    }
    if let ours = perTransition["rules-engine"], let floor = perTransition["C engine, one rule"] {
        report.add(8, "rules-engine above the floor, per transition", (ours - floor) * 1e6, "µs", "ours − the C engine")
    }
    if let ours = perReading["rules-engine"], let peer = perReading["python peer"] {
        report.add(8, "rules-engine / python peer CPU, transition stream", ours / peer, "ratio", "target ≤ 0.25")
    } else {
        say("  8  python peer skipped: \(problem ?? "no python")")
    }
    // The storm, with the default bound on commands waiting for their acknowledgement and with no bound.
    let stormRate = smoke ? 2_000.0 : 30_000.0
    let stormSeconds = smoke ? 0.5 : 5.0
    for (label, options) in [
        ("storm", [String]()), ("storm, no bound", ["--max-unacknowledged-commands", "100000000"]),
    ] {
        var drains: [Double] = []
        var peaks: [Double] = []
        var received: [Double] = []
        var expected = 0.0
        var achieved = 0.0
        for _ in 0..<runs {
            var engine = EngineUnderTest(kind: .ours, broker: broker, prefix: prefix(), ruleCount: 1_000)
            engine.options = options
            let storm = try await stormCPU(
                engine,
                rate: stormRate,
                seconds: stormSeconds,
                sensors: smoke ? 1_000 : 10_000,
                transitions: true
            )
            drains.append(storm.load["drain_seconds"] ?? 0)
            peaks.append(storm.peakMB)
            received.append(storm.load["received"] ?? 0)
            expected = storm.load["expected"] ?? 0
            achieved = storm.load["rate"] ?? 0
        }
        report.add(
            8,
            "\(label): last command after the last reading",
            median(drains),
            "s",
            "target ≤ 2 s; \(Int(median(received))) of \(Int(expected)) commands arrived"
                + (median(received) < expected ? " (the rest superseded)" : "") + ", \(Int(achieved)) readings/s"
        )
        report.add(8, "\(label): engine peak RSS", median(peaks), "MB", "the Python peer: 23 MB in the issue's run")
    }
}

// 9. Scale-out ingest: QoS 1 readings into the NATS layout of docs/scale-out.md, beside the same into mosquitto.
if want(9) {
    let readings = smoke ? 2_000 : 100_000
    var mosquittoRuns: [ScaleOutIngest.Result] = []
    var singleRuns: [ScaleOutIngest.Result] = []
    var clusterRuns: [ScaleOutIngest.Result] = []
    var nativeRuns: [ScaleOutIngest.Result] = []
    for _ in 0..<runs {
        mosquittoRuns.append(try await ScaleOutIngest.intoMosquitto(broker, count: readings))
        singleRuns.append(try await ScaleOutIngest.intoNATS(nodes: 1, readings: readings))
        clusterRuns.append(try await ScaleOutIngest.intoNATS(nodes: 3, readings: readings))
        nativeRuns.append(try await ScaleOutIngest.intoNATS(nodes: 3, readings: readings, natively: true))
    }
    let mosquittoCPU = median(mosquittoRuns.map(\.cpuMicrosecondsPerReading))
    for (label, results) in [
        ("mosquitto, MQTT QoS 1", mosquittoRuns), ("nats-server, MQTT QoS 1 -> stream R1", singleRuns),
        ("3 nats-servers on this machine, MQTT QoS 1 -> stream R3", clusterRuns),
        ("3 nats-servers on this machine, core NATS publish -> stream R3", nativeRuns),
    ] {
        let stalled = results.filter(\.stalled).count
        let stored = results.map(\.stored).min() ?? 0
        report.add(
            9,
            "ingest into \(label)",
            median(results.map(\.readingsPerSecond)),
            "readings/s",
            "\(stored) of \(readings) stored (fewest of \(results.count) runs)"
                + (stalled > 0 ? "; \(stalled) run(s) stalled (the load gave up after 120 s)" : "")
        )
        let cpu = median(results.map(\.cpuMicrosecondsPerReading))
        report.add(9, "  broker CPU per reading, \(label)", cpu, "µs", "\(ratio(cpu, mosquittoCPU)) of mosquitto's")
    }
}

// 10. Scale-out evaluation: 1, 2 and 3 engines over one backlog in the stream (docs/scale-out.md).
if want(10) {
    let sensors = 1_000
    let readingsPerSensor = smoke ? 5 : 200
    var results: [Int: [ScaleOutEngines.Result]] = [:]
    for _ in 0..<runs {
        for engines in 1...3 {
            results[engines, default: []].append(
                try await ScaleOutEngines.run(
                    engines: engines,
                    sensors: sensors,
                    readingsPerSensor: readingsPerSensor,
                    broker: broker
                )
            )
        }
    }
    let one = median(results[1]?.map(\.readingsPerSecond) ?? [])
    for engines in 1...3 {
        let runs = results[engines] ?? []
        let throughput = median(runs.map(\.readingsPerSecond))
        report.add(
            10,
            "\(engines) engine(s) over a backlog of \(sensors * readingsPerSensor) readings (16 partitions, R1)",
            throughput,
            "readings/s",
            "\(ratio(throughput, one)) of one engine's; 2 cores for the engines and nats-server together"
        )
        report.add(
            10,
            "  CPU per reading, \(engines) engine(s): engines / nats-server",
            median(runs.map(\.engineMicrosecondsPerReading)),
            "µs",
            String(format: "nats-server %.1f µs", median(runs.map(\.serverMicrosecondsPerReading)))
        )
    }
}

broker.stop()
let elapsed = seconds(ContinuousClock.now - started)
say(String(format: "done in %.0f s", elapsed))
if let jsonPath {
    struct Output: Codable {
        var smoke: Bool
        var runs: Int
        var seconds: Double
        var figures: [Figure]
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(Output(smoke: smoke, runs: runs, seconds: elapsed, figures: report.figures))
        .write(to: URL(fileURLWithPath: jsonPath))
    say("figures written to \(jsonPath)")
}
