// libFuzzer entry point: the rule-file loader (and, when a file loads, an evaluation over it).
import FileFormats
import Rules

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRules(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let rules = try? RuleLoader.load([RuleSource(path: "fuzz.yaml", text: text)]) {
        _ = Replay.run(
            rules,
            readings: [Reading(topic: "sensors/a/temperature", payload: "31", timestamp: 0)],
            end: 600_000
        )
    }
    return 0
}
