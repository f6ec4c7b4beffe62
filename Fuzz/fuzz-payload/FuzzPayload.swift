// libFuzzer entry point: the payload decoder, as the engine meets it (any bytes on a rule's topic).
import FileFormats
import Rules

let ruleSet = try! RuleLoader.load([
    RuleSource(
        path: "fuzz.yaml",
        text: """
            rules:
              - {id: n, topic: "s/{d}/t", above: 1, field: a.b}
              - {id: e, topic: "s/{d}/t", equals: open}
              - {id: v, topic: "s/{d}/t", between: [0, 10]}
            """
    )
])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPayload(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = JSONValue(parsing: bytes)
    var evaluator = Evaluator(ruleSet: ruleSet)
    var events: [EvaluationEvent] = []
    evaluator.process(Reading(topic: "s/x/t", payload: bytes, timestamp: 0), into: &events)
    evaluator.process(Reading(topic: "s/x/t", payload: bytes, timestamp: 1), into: &events)
    return 0
}
