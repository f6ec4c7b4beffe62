import Foundation
import MQTTTestSupport
import Simulation  // SplitMix64: a failing corruption replays with `--seed`

#if canImport(Glibc)
import Glibc
import MQTT
#endif

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

/// Random corruptions of a live rule file against the real engine: after each, the engine must be alive
/// and serve exactly the last good rules (or the corrupted file's rules, when it is still valid).
func runRuleFileCorruptions(count corruptions: Int, seed: UInt64) async throws -> FaultRow {
    let broker = try await TestBroker()
    let rulesDirectory = try TestBroker.makeDirectory()
    let original = try String(contentsOfFile: repositoryRoot + "/rules/server-room.yaml", encoding: .utf8)
    try original.write(toFile: rulesDirectory + "/rules.yaml", atomically: true, encoding: .utf8)
    let port = try TestBroker.freePort()
    let engine = try ChildProcess(
        builtProductPath("rules-engine"),
        [
            "run", "--rules", rulesDirectory, "--broker", broker.url.description, "--client-id", "soak-rules-engine",
            "--http", "127.0.0.1:\(port)",
        ]
    )
    try await engine.waitForLine("ready")
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
            emit("corruption \(index) (seed \(seed)) took the engine down:\n\(text)")
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
    return FaultRow(
        fault: "rule-file corruption",
        injected: corruptions,
        lost: wrongRules,
        duplicated: nil,
        recoveries: recoveries,
        detail:
            "\(crashes) crashes, \(keptLastGood) failed reloads kept the last good rules, \(applied) still-valid edits applied, \(unchanged) unchanged; engine exit \(exitStatus) on SIGTERM",
        passed: crashes == 0 && wrongRules == 0 && exitStatus == 0
    )
}

/// `sensor_pipeline_rules_reloads_total` by outcome.
func reloads(_ port: Int) async throws -> [String: Int] {
    var result: [String: Int] = [:]
    for (series, value) in try await metrics(port)
    where series.hasPrefix("sensor_pipeline_rules_reloads_total{outcome=\"") {
        result[String(series.split(separator: "\"")[1])] = Int(value)
    }
    return result
}
