import PartitionLeases
import Testing

/// The balancing rules, without a server.
@Suite("Lease plan")
struct LeasePlanTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var partitions: Int
        var owned: Set<Int>
        var held: Set<Int>
        var engines: Int
        var offset: Int
        var expected: LeasePlan
        var testDescription: String {
            "P=\(partitions) owned=\(owned.sorted()) held=\(held.sorted()) engines=\(engines)"
        }
    }

    static let cases: [Case] = [
        // Alone: everything, from its own offset on.
        Case(partitions: 4, owned: [], held: [], engines: 1, offset: 2, expected: LeasePlan(acquire: [2, 3, 0, 1])),
        // A second engine joined: hand back the highest-numbered excess.
        Case(
            partitions: 4,
            owned: [0, 1, 2, 3],
            held: [0, 1, 2, 3],
            engines: 2,
            offset: 0,
            expected: LeasePlan(release: [2, 3])
        ),
        // The newcomer takes what is free, up to its share.
        Case(partitions: 4, owned: [], held: [0, 1], engines: 2, offset: 3, expected: LeasePlan(acquire: [3, 2])),
        Case(partitions: 4, owned: [], held: [0, 1, 2, 3], engines: 2, offset: 0, expected: LeasePlan()),
        // At its share: nothing to do.
        Case(partitions: 4, owned: [0, 1], held: [0, 1, 2, 3], engines: 2, offset: 0, expected: LeasePlan()),
        // 3 engines, 4 partitions: a share of 2; one partition free after a death.
        Case(partitions: 4, owned: [0], held: [0, 1, 2], engines: 3, offset: 1, expected: LeasePlan(acquire: [3])),
        // An engine died (its member key expired): the survivor's share grows to everything.
        Case(
            partitions: 6,
            owned: [0, 1, 2],
            held: [0, 1, 2],
            engines: 1,
            offset: 5,
            expected: LeasePlan(acquire: [5, 3, 4])
        ),
        // More engines than partitions: a share of 1 each; the spare ones stand by.
        Case(partitions: 2, owned: [], held: [0, 1], engines: 3, offset: 0, expected: LeasePlan()),
    ]

    @Test(arguments: cases)
    func plan(_ example: Case) {
        let plan = LeasePlan.plan(
            partitions: example.partitions,
            owned: example.owned,
            held: example.held,
            engines: example.engines,
            offset: example.offset
        )
        #expect(plan == example.expected)
    }

    @Test func fairShareRoundsUp() {
        #expect(LeasePlan.fairShare(partitions: 16, engines: 3) == 6)
        #expect(LeasePlan.fairShare(partitions: 16, engines: 0) == 16)
    }

    @Test func badConfigurationsAreRefusedWithTheReason() {
        #expect(throws: PartitionLeaseError.self) { try PartitionLeaseConfiguration(partitions: 0, owner: "a") }
        #expect(throws: PartitionLeaseError.self) { try PartitionLeaseConfiguration(partitions: 4, owner: "a b") }
        #expect(throws: PartitionLeaseError.self) {
            try PartitionLeaseConfiguration(partitions: 4, owner: "a", ttl: .milliseconds(200))
        }
    }
}
