import Testing

@testable import Rules

@Suite("The index of instances by rule and captured values")
struct InstanceIndexTests {
    /// Instances of three rules over the same labels, many enough to grow the table several times.
    static func instances(count: Int) -> ContiguousArray<Evaluator.Instance> {
        ContiguousArray((0..<count).map { Evaluator.Instance(rule: Int32($0 % 3), labels: ["dev-\($0 / 3)", "x"]) })
    }

    @Test func everyInstanceIsFoundByItsRuleAndLabelsAsItGrows() {
        var instances: ContiguousArray<Evaluator.Instance> = []
        var index = InstanceIndex()
        for instance in InstanceIndexTests.instances(count: 3_000) {
            #expect(index.slot(rule: instance.rule, labels: instance.labels, in: instances) == nil)
            instances.append(instance)
            index.insert(slot: Int32(instances.count - 1), in: instances)
        }
        #expect(index.count == 3_000)
        for (slot, instance) in instances.enumerated() {
            #expect(index.slot(rule: instance.rule, labels: instance.labels, in: instances) == Int32(slot))
        }
        // The same labels under another rule, and other labels, are not found.
        #expect(index.slot(rule: 3, labels: ["dev-0", "x"], in: instances) == nil)
        #expect(index.slot(rule: 0, labels: ["dev-0"], in: instances) == nil)
        #expect(index.slot(rule: 0, labels: ["dev-1000", "x"], in: instances) == nil)
    }

    @Test func anIndexBuiltFromInstancesFindsEachOfThem() {
        let instances = InstanceIndexTests.instances(count: 1_001)
        let index = InstanceIndex(of: instances)
        #expect(index.count == 1_001)
        for (slot, instance) in instances.enumerated() {
            #expect(index.slot(rule: instance.rule, labels: instance.labels, in: instances) == Int32(slot))
        }
        #expect(InstanceIndex(of: []).slot(rule: 0, labels: [], in: []) == nil)
    }
}
