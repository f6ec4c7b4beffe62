import FileFormats
import Rules
import Testing

/// Thousands of random and mutated rule files: the loader returns rules or errors, never crashes.
@Suite("Rule loader robustness")
struct LoaderFuzzTests {
    static let seedFile = """
        rules:
          - id: rack-cooling
            topic: sensors/{rack}/temperature
            field: value
            above: 30
            clear: 28
            for: 10s
            cooldown: 1m
            stale: 2m
            max_transitions: 6 per 1h
            on_fire:
              - publish: {topic: "actuators/{rack}/cooling/set", payload: {state: "on", v: "{value}"}}
            on_clear:
              - log: "cool {rack}"
        """

    static let fragments = [
        "{", "}", "[", "]", ":", "- ", "\n", "  ", "#", "+", "{rack}", "\"", "'", "&a", "*a", "!!int", ".nan", "1e999",
        "between: [1", "above:", "on_fire:", "\t", "\u{0}", "é", "---", "...", "? ", "|", ">", "%", "@", "`",
    ]

    @Test func mutatedFilesNeverCrashTheLoader() {
        var generator = SplitMix64(seed: 0x5EED)
        var loaded = 0
        var rejected = 0
        for iteration in 0..<3000 {
            var bytes = Array(Self.seedFile.utf8)
            for _ in 0..<(1 + Int(generator.next() % 6)) {
                let position = Int(generator.next() % UInt64(bytes.count + 1))
                switch generator.next() % 4 {
                case 0:
                    let fragment = Self.fragments[Int(generator.next() % UInt64(Self.fragments.count))]
                    bytes.insert(contentsOf: fragment.utf8, at: position)
                case 1:
                    if position < bytes.count { bytes.remove(at: position) }
                case 2:
                    if position < bytes.count { bytes[position] = UInt8(truncatingIfNeeded: generator.next()) }
                default:
                    let end = min(bytes.count, position + Int(generator.next() % 20))
                    if position < end { bytes.removeSubrange(position..<end) }
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                let rules = try RuleLoader.load([RuleSource(path: "fuzz-\(iteration).yaml", text: text)])
                loaded += 1
                _ = Replay.run(
                    rules,
                    readings: [Reading(topic: "sensors/r1/temperature", payload: "31", timestamp: 0)],
                    end: 600_000
                )
            } catch {
                rejected += 1
                #expect(!error.diagnostics.isEmpty)
                for diagnostic in error.diagnostics {
                    #expect(diagnostic.location.file == "fuzz-\(iteration).yaml")
                    #expect(diagnostic.location.line >= 1)
                }
            }
        }
        #expect(loaded > 0)
        #expect(rejected > 0)
    }

    @Test func randomBytesNeverCrashTheLoaderOrTheJSONParser() {
        var generator = SplitMix64(seed: 42)
        for _ in 0..<2000 {
            let count = Int(generator.next() % 200)
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            _ = try? RuleLoader.load([RuleSource(path: "random.yaml", text: String(decoding: bytes, as: UTF8.self))])
            _ = JSONValue(parsing: bytes)
        }
    }
}

/// A small deterministic generator, so a failing iteration can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
