// libFuzzer entry point: the readings file of `rules-engine replay`/`diff` and `sensor-sim replay`
// (JSON lines, times as Unix ms or RFC 3339), replayed through rules with the longest durations allowed.
import FileFormats
import Rules

let ruleSet = try! RuleLoader.load([
    RuleSource(
        path: "fuzz.yaml",
        text: """
            rules:
              - {id: n, topic: "s/{d}/t", above: 1, for: 36524d, stale: 36524d, cooldown: 36524d, min_on: 36524d}
              - {id: e, topic: "s/{d}/t", equals: open, max_transitions: 2 per 36524d}
            """
    )
])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReadings(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = Timestamp.parseRFC3339(text)
    guard let readings = try? RecordedReadings.parse(text, path: "fuzz.jsonl") else { return 0 }
    let end = readings.map(\.timestamp).max().map { $0 + RuleDuration.maximumMilliseconds }
    _ = Replay.run(ruleSet, readings: readings, end: end)
    return 0
}
