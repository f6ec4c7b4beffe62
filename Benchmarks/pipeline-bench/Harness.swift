import Foundation
import MQTTTestSupport

#if canImport(Glibc)
import Glibc
import MQTT
#endif

/// Writes a line to stdout at once (progress shows in a pipe or a file too).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// One figure of the run, as printed and as written to `--json`.
struct Figure: Codable {
    var scenario: Int
    var name: String
    var value: Double
    var unit: String
    /// The target or the comparison it answers, with the measured ratio when there is one.
    var note: String
}

/// What one benchmark run found.
final class Report {
    private(set) var figures: [Figure] = []

    func add(_ scenario: Int, _ name: String, _ value: Double, _ unit: String, _ note: String = "") {
        let figure = Figure(scenario: scenario, name: name, value: value, unit: unit, note: note)
        figures.append(figure)
        let number = value >= 100 || value == value.rounded() ? String(Int(value)) : String(format: "%.2f", value)
        say(
            "  \(scenario)  " + name.padded(48) + number.padded(12, left: true) + " " + unit.padded(12) + " " + note
        )
    }

    func value(_ name: String) -> Double? { figures.last { $0.name == name }?.value }
}

extension String {
    func padded(_ width: Int, left: Bool = false) -> String {
        guard count < width else { return self }
        let padding = String(repeating: " ", count: width - count)
        return left ? padding + self : self + padding
    }
}

func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    return values.sorted()[values.count / 2]
}

func ratio(_ value: Double, _ reference: Double) -> String {
    reference > 0 ? String(format: "%.2f×", value / reference) : "n/a"
}

/// The repository root (this file is Benchmarks/pipeline-bench/Harness.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs `mqtt-load` (the raw libmosquitto client) and returns the figures of its JSON line.
func runLoad(_ arguments: [String]) async throws -> [String: Double] {
    let process = try ChildProcess(builtProductPath("mqtt-load"), arguments)
    let status = await process.waitForExitAndOutput()
    guard let line = process.output.last(where: { $0.hasPrefix("{") }),
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    else {
        throw BenchError(
            "mqtt-load \(arguments.joined(separator: " ")) printed nothing (exit \(status)): \(process.standardError)"
        )
    }
    return object.compactMapValues { ($0 as? NSNumber)?.doubleValue }
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

/// Peak resident memory of a process (VmHWM), in MB.
func peakResidentMegabytes(_ pid: Int32) -> Double { statusMegabytes(pid, "VmHWM") }

/// A size from `/proc/PID/status` in MB (`VmHWM`: peak resident; `RssAnon`: resident heap, stacks and
/// written data, the process's own; `RssFile`: resident pages of its executable and libraries, which the
/// kernel shares between processes and can drop and read again).
func statusMegabytes(_ pid: Int32, _ field: String) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
        let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
    else { return 0 }
    return kilobytes / 1024
}

/// Resident MB by what is mapped (`/proc/PID/smaps`): the executable, Foundation's libraries, the Swift runtime,
/// other libraries, and memory that is not a file's (heap, stacks; named `[heap]`, `[stack]` or unnamed).
func residentBreakdown(_ pid: Int32) -> [(part: String, megabytes: Double)] {
    // Read to its end: procfs files report no size, so a read by size stops early.
    guard let data = FileHandle(forReadingAtPath: "/proc/\(pid)/smaps")?.readDataToEndOfFile(),
        let smaps = String(data: data, encoding: .utf8),
        let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
    else { return [] }
    var kilobytes: [String: Double] = [:]
    var part = "anonymous"
    for line in smaps.split(separator: "\n") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if let first = fields.first, first.contains("-"), first.allSatisfy({ $0.isHexDigit || $0 == "-" }) {
            let path = fields.count >= 6 ? String(fields[5]) : ""
            part =
                switch path {
                case executable: "the executable"
                case _ where path.contains("Foundation"): "Foundation"
                case _ where path.contains("/swift/"): "Swift runtime"
                case _ where path.hasPrefix("/"): "other libraries"
                default: "anonymous"
                }
        } else if fields.first == "Rss:", fields.count >= 2, let value = Double(fields[1]) {
            kilobytes[part, default: 0] += value
        }
    }
    return ["the executable", "Foundation", "Swift runtime", "other libraries", "anonymous"].map {
        ($0, (kilobytes[$0] ?? 0) / 1024)
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// A rules engine under test: ours (`rules-engine run`) or the Python peer, with scenario 2's rules.
struct EngineUnderTest {
    enum Kind {
        case ours
        case peer(python: String)
        /// `mqtt-load echo`: one hard-wired rule in C on libmosquitto, the floor under a transition.
        case floor
    }

    var kind: Kind
    var broker: TestBroker
    var prefix: String
    var ruleCount: Int
    /// More `rules-engine run` options.
    var options: [String] = []

    var name: String {
        switch kind {
        case .ours: "rules-engine"
        case .peer: "python peer"
        case .floor: "C engine, one rule"
        }
    }

    /// Scenario 2's rules: 10 capture rules on PREFIX/sensors/{device}/temperature, the rest on other topics.
    static func ruleFile(prefix: String, ruleCount: Int) -> String {
        var text = "rules:\n"
        for index in 0..<10 {
            text += """
                  - id: hot-\(index)
                    topic: \(prefix)/sensors/{device}/temperature
                    above: \(25 + index)
                    clear: \(23 + index)
                    on_fire:
                      - publish: {topic: "\(prefix)/actuators/{device}/cooling-\(index)/set", payload: {state: "on"}}
                    on_clear:
                      - publish: {topic: "\(prefix)/actuators/{device}/cooling-\(index)/set", payload: {state: "off"}}

                """
        }
        for index in 10..<max(10, ruleCount) {
            text += """
                  - id: other-\(index)
                    topic: \(prefix)/other/{device}/q\(index)
                    above: 50
                    on_fire:
                      - publish: {topic: "\(prefix)/actuators/{device}/q\(index)/set", payload: {state: "on"}}

                """
        }
        return text
    }

    /// Starts the engine and waits for its `ready` line.
    func start() async throws -> ChildProcess {
        let process: ChildProcess
        switch kind {
        case .ours:
            let directory = try TestBroker.makeDirectory()
            try EngineUnderTest.ruleFile(prefix: prefix, ruleCount: ruleCount)
                .write(toFile: directory + "/bench.yaml", atomically: true, encoding: .utf8)
            process = try ChildProcess(
                builtProductPath("rules-engine"),
                [
                    "run", "--rules", directory, "--broker", broker.url.description, "--client-id",
                    "bench-engine-\(UInt32.random(in: 0...UInt32.max))",
                ] + options
            )
        case .floor:
            process = try ChildProcess(builtProductPath("mqtt-load"), ["echo", "\(broker.port)", prefix])
        case .peer(let python):
            process = try ChildProcess(
                python,
                [repositoryRoot + "/Benchmarks/baselines/paho_engine.py", "\(broker.port)", prefix, "\(ruleCount)"]
            )
        }
        try await process.waitForLine("ready", timeout: .seconds(60))
        return process
    }

    /// Stops the engine; returns how many messages it evaluated (from its last words).
    static func stop(_ process: ChildProcess) async -> Int {
        process.signal(SIGTERM)
        _ = await process.waitForExit()
        for line in process.standardError.split(separator: "\n").reversed() {
            if let range = line.range(of: "messages=") {
                return Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
            }
        }
        return 0
    }
}

/// A venv with paho-mqtt for the peer, made once under .build-bench; nil (with the reason) when pip cannot.
func peerPython() async -> (python: String?, problem: String?) {
    let venv = repositoryRoot + "/.build-bench/venv"
    let python = venv + "/bin/python"
    func run(_ arguments: [String]) async -> Int32 {
        guard let process = try? ChildProcess(arguments[0], Array(arguments.dropFirst())) else { return -1 }
        return await process.waitForExit()
    }
    if await run([python, "-c", "import paho.mqtt"]) == 0 { return (python, nil) }
    guard await run(["/usr/bin/env", "python3", "-m", "venv", venv]) == 0 else {
        return (nil, "python3 -m venv failed")
    }
    guard await run([venv + "/bin/pip", "install", "--quiet", "paho-mqtt>=2,<3"]) == 0 else {
        return (nil, "pip install paho-mqtt failed")
    }
    return (python, nil)
}
