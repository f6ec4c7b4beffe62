// Simulator throughput and cost, measured on the real `sensor-sim` against a private mosquitto:
//   1. readings/s one process publishes at QoS 0 (10,000 devices, each sensor at 100 readings/s);
//   2. CPU of 10,000 devices at 1 Hz (user+system seconds per wall second, from /proc).
//
//   swift build -c release --product sensor-sim && swift run -c release sim-bench [--seconds N] [--runs N]

import Foundation
import MQTTTestSupport

#if canImport(Glibc)
import Glibc
#endif

var seconds = 5
var runs = 3
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--seconds": seconds = Int(arguments.next() ?? "") ?? seconds
    case "--runs": runs = Int(arguments.next() ?? "") ?? runs
    default:
        print("usage: sim-bench [--seconds N] [--runs N]")
        exit(2)
    }
}

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path
let devices = root + "/Devices/server-room.yaml"  // two devices per replica
let simulator = builtProductPath("sensor-sim")
guard FileManager.default.fileExists(atPath: simulator) else {
    print("build it first: swift build -c release --product sensor-sim")
    exit(2)
}

/// CPU seconds (user + system) a process used so far.
func cpuSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    return ((Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)) / ticks
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

let broker = try await TestBroker()
print("sensor-sim against mosquitto on loopback, median of \(runs) runs of \(seconds) s")

var rates: [Double] = []
for _ in 0..<runs {
    let process = try ChildProcess(
        simulator,
        [
            "run", devices, "--broker", broker.url.description, "--replicas", "5000", "--rate", "100",
            "--duration", "\(seconds)s", "--qos", "0",
        ]
    )
    try await process.waitForLine("ready")
    _ = await process.waitForExit()
    let published =
        process.standardError.split(separator: "\n").last { $0.hasPrefix("published ") }
        .flatMap { Int($0.split(separator: " ")[1]) } ?? 0
    rates.append(Double(published) / Double(seconds))
}
print(
    "QoS 0, 10,000 devices asked for 1,000,000 readings/s: \(Int(median(rates))) readings/s published (target ≥ 100,000)"
)

var loads: [Double] = []
for _ in 0..<runs {
    let process = try ChildProcess(
        simulator,
        ["run", devices, "--broker", broker.url.description, "--replicas", "5000", "--rate", "1", "--qos", "0"]
    )
    try await process.waitForLine("ready")
    try await Task.sleep(for: .seconds(1))  // let the first interval's spread settle
    let before = cpuSeconds(process.pid)
    let start = ContinuousClock.now
    try await Task.sleep(for: .seconds(seconds))
    let elapsed = ContinuousClock.now - start
    let used = cpuSeconds(process.pid) - before
    loads.append(used / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
    process.signal(SIGTERM)
    _ = await process.waitForExit()
}
print("10,000 devices at 1 Hz: \(String(format: "%.2f", median(loads))) cores (target ≤ 1)")
broker.stop()
