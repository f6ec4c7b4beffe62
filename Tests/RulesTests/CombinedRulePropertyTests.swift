import PropertyBased
import Rules
import Testing

/// Random `all` / `any` / `not` rules over leaves a room owns and leaves every room shares, fed random
/// readings (some unusable), against a naive model written from the contract: each leaf latches with its
/// own hysteresis, unknown until its first usable reading and after an unusable one; Kleene's logic;
/// `on_unknown: keep` leaves the instance as it was; an instance starts with the first reading on a leaf
/// it owns.
@Suite("Combined conditions against a naive model")
struct CombinedRulePropertyTests {
    /// One leaf: `above` with its own clear level, on `p/{room}/qN` (owned) or `p/shared/qN` (shared),
    /// possibly under `not`.
    struct Leaf {
        var shared: Bool
        var negated: Bool
        var above: Int
        var clear: Int
    }

    static func ruleText(all: Bool, leaves: [Leaf]) -> String {
        var text = "rules:\n  - id: r\n    \(all ? "all" : "any"):\n"
        for (index, leaf) in leaves.enumerated() {
            let topic = leaf.shared ? "p/shared/q\(index)" : "p/{room}/q\(index)"
            let condition = "{topic: \"\(topic)\", above: \(leaf.above), clear: \(leaf.clear)}"
            text += "      - \(leaf.negated ? "not: \(condition)" : condition)\n"
        }
        return text + "    on_fire:\n      - log: \"{room}\"\n"
    }

    /// The model: fire/clear per room, in order.
    static func expected(all: Bool, leaves: [Leaf], readings: [(leaf: Int, room: Int, value: Int?)]) -> [String] {
        struct State {
            var latched = false
            var usable = false
        }
        var states: [String: State] = [:]
        var rooms: [Int] = []  // instances, in the order they started
        var holds: [Int: Bool] = [:]
        var firing: [Int: Bool] = [:]
        var result: [String] = []
        func key(_ leaf: Int, _ room: Int) -> String { leaves[leaf].shared ? "\(leaf)" : "\(leaf)/\(room)" }
        for (time, reading) in readings.enumerated() {
            var state = states[key(reading.leaf, reading.room)] ?? State()
            if let value = reading.value {
                let threshold = state.latched ? leaves[reading.leaf].clear : leaves[reading.leaf].above
                state.latched = value > threshold
                state.usable = true
            } else {
                state.usable = false
            }
            states[key(reading.leaf, reading.room)] = state
            if !leaves[reading.leaf].shared, !rooms.contains(reading.room) { rooms.append(reading.room) }
            let affected = leaves[reading.leaf].shared ? rooms : rooms.filter { $0 == reading.room }
            for room in affected {
                // 0 false, 1 unknown, 2 true: all is the minimum, any the maximum, not 2 − x.
                let values = leaves.indices.map { index -> Int in
                    let state = states[key(index, room)] ?? State()
                    let value = state.usable ? (state.latched ? 2 : 0) : 1
                    return leaves[index].negated ? 2 - value : value
                }
                let truth = all ? values.min()! : values.max()!
                if truth != 1 { holds[room] = truth == 2 }
                let wants = holds[room] ?? false
                if wants != (firing[room] ?? false) {
                    firing[room] = wants
                    result.append("\(wants ? "fire" : "clear") room=r\(room)@\(time * 1000)")
                }
            }
        }
        return result
    }

    @Test func theEvaluatorDecidesAsTheModel() async throws {
        await propertyCheck(
            count: 400,
            input: Gen.bool,
            Gen.int(in: 0...1000).array(of: 2...3),
            Gen.int(in: 0...10_000).array(of: 1...120)
        ) { all, leafSeeds, readingSeeds in
            let leaves = leafSeeds.map { seed in
                Leaf(shared: seed % 4 == 0, negated: seed % 3 == 0, above: 40 + seed % 20, clear: 30 + seed % 10)
            }
            // Some leaf must be owned (a rule whose leaves are all shared has no instance to join).
            guard leaves.contains(where: { !$0.shared }) else { return }
            let readings = readingSeeds.map { seed in
                (leaf: seed % leaves.count, room: (seed / 7) % 3, value: seed % 11 == 0 ? nil : (seed / 21) % 100)
            }
            let recorded = readings.enumerated().map { time, reading in
                let leaf = leaves[reading.leaf]
                return (
                    Int64(time * 1000),
                    leaf.shared ? "p/shared/q\(reading.leaf)" : "p/r\(reading.room)/q\(reading.leaf)",
                    reading.value.map(String.init) ?? "\"n/a\""
                )
            }
            let text = Self.ruleText(all: all, leaves: leaves)
            let actual = try? combinedTransitions(text, recorded)
            #expect(actual == Self.expected(all: all, leaves: leaves, readings: readings), "\(text)")
        }
    }
}
