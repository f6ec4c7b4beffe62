import Rules
import Testing

/// Every combination of true / false / unknown for 2 and 3 inputs, against definitions written another way:
/// Kleene's logic as min / max / 1 − x over {0, ½, 1}, and a vote as "what every way of resolving the
/// unknown members would give".
@Suite("Three-valued tables")
struct TruthTableTests {
    static let inputs: [[Truth]] = {
        let values: [Truth] = [.true, .false, .unknown]
        let pairs = values.flatMap { a in values.map { [a, $0] } }
        let triples = pairs.flatMap { pair in values.map { pair + [$0] } }
        return pairs + triples
    }()

    static func number(_ truth: Truth) -> Double {
        switch truth {
        case .true: 1
        case .false: 0
        case .unknown: 0.5
        }
    }

    static func truth(_ number: Double) -> Truth {
        number == 1 ? .true : number == 0 ? .false : .unknown
    }

    @Test(arguments: inputs)
    func allIsTheMinimum(values: [Truth]) {
        #expect(Truth.all(values) == Self.truth(values.map(Self.number).min()!))
    }

    @Test(arguments: inputs)
    func anyIsTheMaximum(values: [Truth]) {
        #expect(Truth.any(values) == Self.truth(values.map(Self.number).max()!))
    }

    @Test(arguments: [Truth.true, .false, .unknown])
    func notSwapsTrueAndFalse(value: Truth) {
        #expect(value.negated == Self.truth(1 - Self.number(value)))
    }

    @Test(arguments: inputs)
    func notOverAllIsAnyOverNot(values: [Truth]) {
        #expect(Truth.all(values).negated == Truth.any(values.map(\.negated)))
    }

    static let matches: [Rule.Match] = [.any, .all, .atLeast(1), .atLeast(2), .atLeast(3)]

    @Test(arguments: inputs, matches)
    func aVoteIsUnknownOnlyWhenTheUnknownMembersCouldDecideIt(values: [Truth], match: Rule.Match) {
        let holding = values.count { $0 == .true }
        let unknown = values.count { $0 == .unknown }
        // Every way the unknown members could turn out.
        var outcomes = Set<Bool>()
        for extra in 0...unknown {
            let count = holding + extra
            switch match {
            case .any: outcomes.insert(count > 0)
            case .all: outcomes.insert(count == values.count)
            case .atLeast(let needed): outcomes.insert(count >= needed)
            }
        }
        let expected: Truth = outcomes.count == 2 ? .unknown : outcomes.first! ? .true : .false
        #expect(Truth.vote(match, holding: holding, unknown: unknown, total: values.count) == expected)
    }
}
