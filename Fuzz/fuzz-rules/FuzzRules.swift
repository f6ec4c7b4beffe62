// libFuzzer entry point: the rule-file loader (and, when a file loads, an evaluation over it: readings on
// every condition's topic, for two values of each capture, usable and not, with the clock run on).
import FileFormats
import Rules

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRules(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let rules = try? RuleLoader.load([RuleSource(path: "fuzz.yaml", text: text)]) else { return 0 }
    var topics = ["sensors/a/temperature"]
    for rule in rules.rules {
        for leaf in rule.leaves {
            for value in ["a", "b"] {
                topics.append(
                    leaf.topic.levels.map { level in
                        switch level {
                        case .literal(let text): text
                        case .capture, .anyLevel, .remainingLevels: value
                        }
                    }.joined(separator: "/")
                )
            }
        }
    }
    var readings: [Reading] = []
    for (index, payload) in ["31", "\"open\"", "-5", "true", "{\"value\": 99}", "x"].enumerated() {
        for topic in topics.prefix(64) {
            readings.append(Reading(topic: topic, payload: payload, timestamp: Int64(index) * 1000))
        }
    }
    _ = Replay.run(rules, readings: readings, end: 600_000)
    return 0
}
