// fault-soak: runs mosquitto and the real engine, injects faults, and prints a table of what was
// injected, what broke and how long recovery took. Short by default (the test command runs it);
// `--long` for the full counts. Faults so far: random corruptions of live rule files. (Issue 7 lists
// the ones to come: engine and broker kills, a network cut, an actuator kill.)
//
//   swift run -c release fault-soak [--long] [--seed N]

import Foundation
import MQTTTestSupport
import Simulation  // SplitMix64: a failing corruption replays with `--seed`

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

var long = false
var seed: UInt64 = 1
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--long": long = true
    case "--seed": seed = UInt64(arguments.next() ?? "") ?? seed
    default:
        FileHandle.standardError.write(Data("usage: fault-soak [--long] [--seed N]\n".utf8))
        exit(2)
    }
}

struct SoakError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func get(_ port: Int, _ path: String) async throws -> (status: Int, body: String) {
    let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// `sensor_pipeline_rules_reloads_total` by outcome.
func reloads(_ port: Int) async throws -> [String: Int] {
    var result: [String: Int] = [:]
    for line in try await get(port, "/metrics").body.split(separator: "\n")
    where line.hasPrefix("sensor_pipeline_rules_reloads_total{outcome=\"") {
        let outcome = line.split(separator: "\"")[1]
        result[String(outcome)] = Int(line.split(separator: " ").last ?? "") ?? 0
    }
    return result
}

/// One random corruption of a YAML text: byte flips, deletions, YAML-significant insertions, truncation,
/// line swaps and duplications, odd numbers.
func corrupt(_ text: String, using random: inout SplitMix64) -> String {
    var bytes = Array(text.utf8)
    let specials = [
        ":", "- ", "{", "}", "[", "\"", "'", "\t", "&a ", "*a", "!!binary ", "#", "\n  ", "~", "1e999", "-", "?",
    ]
    for _ in 0..<Int.random(in: 1...3, using: &random) {
        guard !bytes.isEmpty else { break }
        let position = Int.random(in: 0..<bytes.count, using: &random)
        switch Int.random(in: 0..<6, using: &random) {
        case 0: bytes[position] = UInt8.random(in: 0x20...0x7E, using: &random)
        case 1: bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...12, using: &random)))
        case 2: bytes.insert(contentsOf: Array(specials.randomElement(using: &random)!.utf8), at: position)
        case 3: bytes.removeSubrange(position...)
        case 4:
            var lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            let a = Int.random(in: 0..<lines.count, using: &random)
            let b = Int.random(in: 0..<lines.count, using: &random)
            if Bool.random(using: &random) { lines.swapAt(a, b) } else { lines.insert(lines[a], at: b) }
            bytes = Array(lines.joined(separator: "\n").utf8)
        default:
            let digits = bytes.indices.filter { (0x30...0x39).contains(bytes[$0]) }
            if let digit = digits.randomElement(using: &random) {
                bytes.replaceSubrange(
                    digit...digit,
                    with: Array(["-1", "99999999999999999999", ".5", "0x1F"].randomElement(using: &random)!.utf8)
                )
            }
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path
let corruptions = long ? 1_000 : 40
let broker = try await TestBroker()
let rulesDirectory = try TestBroker.makeDirectory()
let original = try String(contentsOfFile: root + "/rules/server-room.yaml", encoding: .utf8)
try original.write(toFile: rulesDirectory + "/rules.yaml", atomically: true, encoding: .utf8)
let port = try TestBroker.freePort()
let engine = try ChildProcess(
    builtProductPath("rules-engine"),
    [
        "run", "--rules", rulesDirectory, "--broker", broker.url.description, "--client-id", "soak-engine", "--http",
        "127.0.0.1:\(port)",
    ]
)
try await engine.waitForLine("ready")
print(
    "fault-soak\(long ? " (long)" : ""), seed \(seed): mosquitto on 127.0.0.1:\(broker.port), rules-engine pid \(engine.pid)"
)

var random = SplitMix64(seed: seed)
var lastGood = try await get(port, "/api/rules").body
var (keptLastGood, applied, unchanged, crashes, wrongRules) = (0, 0, 0, 0, 0)
var recoveries: [Double] = []
for index in 0..<corruptions {
    let text = corrupt(original, using: &random)
    let before = try await reloads(port)
    let started = ContinuousClock.now
    let temporary = rulesDirectory + "/.rules.yaml.tmp"
    try text.write(toFile: temporary, atomically: false, encoding: .utf8)
    guard rename(temporary, rulesDirectory + "/rules.yaml") == 0 else { throw SoakError("rename failed") }
    var after = before
    while after.values.reduce(0, +) == before.values.reduce(0, +) {
        guard kill(engine.pid, 0) == 0 else { break }
        guard ContinuousClock.now - started < .seconds(10) else {
            throw SoakError("corruption \(index): no reload within 10 s")
        }
        try await Task.sleep(for: .milliseconds(10))
        after = try await reloads(port)
    }
    let elapsed = ContinuousClock.now - started
    recoveries.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
    guard kill(engine.pid, 0) == 0, try await get(port, "/healthz").status != 0 else {
        crashes += 1
        print("corruption \(index) (seed \(seed)) took the engine down:\n\(text)")
        break
    }
    let rules = try await get(port, "/api/rules").body
    if after["failed", default: 0] > before["failed", default: 0] {
        if rules == lastGood { keptLastGood += 1 } else { wrongRules += 1 }
    } else if after["applied", default: 0] > before["applied", default: 0] {
        applied += 1  // the corruption was still valid YAML and valid rules: it is the new last good
        lastGood = rules
    } else {
        unchanged += 1
    }
}
engine.signal(SIGTERM)
let exitStatus = await engine.waitForExit()
broker.stop()

let sorted = recoveries.sorted()
func percentile(_ p: Double) -> String {
    sorted.isEmpty ? "-" : String(format: "%.0f ms", sorted[min(sorted.count - 1, Int(p * Double(sorted.count)))])
}
print("fault                  injected  crashes  last good kept  wrong rules  valid edits  unchanged  reload p50 / max")
print(
    "rule-file corruption   "
        + [
            String(corruptions), String(crashes), String(keptLastGood), String(wrongRules), String(applied),
            String(unchanged),
        ]
        .map { $0.padding(toLength: max(8, $0.count), withPad: " ", startingAt: 0) }.joined(separator: " ")
        + " \(percentile(0.5)) / \(percentile(1))"
)
print("engine exit status after SIGTERM: \(exitStatus)")
exit(crashes == 0 && wrongRules == 0 && exitStatus == 0 ? 0 : 1)
