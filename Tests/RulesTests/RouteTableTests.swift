import Testing

@testable import Rules

@Suite("The table of routes by topic")
struct RouteTableTests {
    /// Topics of every length around the hash's 8-byte steps, some differing only in their last byte, one
    /// empty, some not ASCII.
    static let topics: [String] =
        (0..<2_000).map { "site/dev-\($0)/temperature" } + (0..<40).map { String(repeating: "a", count: $0) }
        + ["site/dev-1/temperaturE", "site/dev-1/temperatur", "site/dev-1/temperature/", "capteurs/séjour/température"]
        + ["センサー/温度", "a\u{0}b", "a\u{0}c"]

    @Test(arguments: [0, 1, 0x0123_4567_89AB_CDEF, .max] as [UInt64])
    func everyTopicIsFoundByItsBytesAsTheTableGrows(seed: UInt64) {
        var table = RouteTable(seed: seed)
        for (position, topic) in RouteTableTests.topics.enumerated() {
            #expect(table.index(of: topic) == nil, "\(topic) before it was added")
            let index = table.insert(topic, route: Evaluator.Route(lastSequence: Int64(position)))
            #expect(index == position)
        }
        #expect(table.count == RouteTableTests.topics.count)
        for (position, topic) in RouteTableTests.topics.enumerated() {
            #expect(table.index(of: topic) == position, "\(topic)")
            #expect(table.topic(at: position) == topic)
            #expect(table[route: position].lastSequence == Int64(position))
        }
        for absent in [
            "site/dev-2000/temperature", "site/dev-1/humidity", String(repeating: "a", count: 40), "a\u{0}d",
        ] {
            #expect(table.index(of: absent) == nil, "\(absent)")
        }
    }

    @Test func aRouteIsChangedInPlace() {
        var table = RouteTable(seed: 7)
        let index = table.insert("site/dev-1/temperature", route: Evaluator.Route())
        table[route: index].lastSequence = 42
        table[route: index].resolution = 3
        table[route: index].slotBase = 10
        let route = table[route: table.index(of: "site/dev-1/temperature")!]
        #expect(route.lastSequence == 42 && route.resolution == 3 && route.slotBase == 10)
    }

    @Test func aTopicFromSeparateStorageIsFoundToo() {
        var table = RouteTable(seed: 7)
        table.insert("site/dev-1/temperature", route: Evaluator.Route())
        // A topic built piece by piece, and one sliced out of a longer string: the same bytes.
        var built = "site/"
        built += "dev-1/"
        built += "temperature"
        let sliced = String("xxsite/dev-1/temperaturexx".dropFirst(2).dropLast(2))
        #expect(table.index(of: built) == 0)
        #expect(table.index(of: sliced) == 0)
    }
}

extension RouteTableTests {
    /// Byte strings of one length that differ in one byte, at every position around the 8-byte steps.
    @Test(arguments: [1, 7, 8, 9, 15, 16, 17, 33])
    func bytesThatDifferInOnePlaceAreNotEqualAndHashApart(length: Int) {
        let base = [UInt8](repeating: UInt8(ascii: "x"), count: length)
        base.withUnsafeBytes { baseBytes in
            #expect(RouteTable.equal(baseBytes, baseBytes))
            let baseHash = RouteTable.hash(baseBytes, seed: 1)
            for position in 0..<length {
                var changed = base
                changed[position] = UInt8(ascii: "y")
                changed.withUnsafeBytes { changedBytes in
                    #expect(!RouteTable.equal(baseBytes, changedBytes), "length \(length), byte \(position)")
                    #expect(RouteTable.hash(changedBytes, seed: 1) != baseHash, "length \(length), byte \(position)")
                }
            }
        }
    }
}
