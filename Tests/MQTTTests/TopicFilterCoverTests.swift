import MQTT
import PropertyBased
import Testing

@Suite("Topic filter cover: every message delivered once")
struct TopicFilterCoverTests {
    @Test(
        arguments: [
            (["s/chilled/+/t", "s/+/+/t"], ["s/+/+/t"]),
            (["s/chilled/+/t", "s/+/room/t"], ["s/+/+/t"]),
            (["s/a/t", "s/b/t", "s/+/h"], ["s/a/t", "s/b/t", "s/+/h"]),
            (["s/a/t", "s/a/t", "s/a/h"], ["s/a/t", "s/a/h"]),
            (["s/#", "s/a/t", "x/y"], ["s/#", "x/y"]),
            (["s", "s/#"], ["s/#"]),
            (["s/+", "s"], ["s/+", "s"]),
            (["a/+/c/#", "a/b/+"], ["a/+/+/#"]),
            (["$SYS/x", "+/x", "#"], ["$SYS/x", "#"]),
            // Merging the first two makes a filter that overlaps the third, which neither part did.
            (["s/a/x", "s/+/x", "s/b/+"], ["s/+/+"]),
        ] as [([String], [String])]
    )
    func cover(filters: [String], expected: [String]) {
        #expect(TopicFilterCover(covering: filters).filters == expected)
    }

    @Test(
        arguments: [
            ("s/+/t", "s/a/t", true), ("s/#", "s", true), ("s/#", "s/a/b", true), ("+", "$SYS", false),
            ("#", "$SYS/x", false), ("$SYS/#", "$SYS/x", true), ("s/+", "s", false), ("s/+", "s/", true),
            ("s/a", "s/b", false),
        ] as [(String, String, Bool)]
    )
    func matches(filter: String, topic: String, expected: Bool) {
        #expect(TopicFilterCover.matches(filter, topic: topic) == expected)
    }

    static let filterLevels = ["a", "b", "$s", "", "+"]
    static let topicLevels = ["a", "b", "c", "$s", ""]
    /// Every topic of one to four levels over `topicLevels` (one more value than the filters use).
    static let topics: [String] = (1...4).reduce(into: [[String]]()) { all, length in
        var current: [[String]] = [[]]
        for _ in 0..<length { current = current.flatMap { prefix in topicLevels.map { prefix + [$0] } } }
        all += current
    }.map { $0.joined(separator: "/") }

    /// Random filter sets: every topic that a given filter matches matches exactly one filter of the cover, no
    /// topic matches two, and a set without overlaps is its own cover.
    @Test func randomFilterSetsAreCoveredOnceEach() async {
        await propertyCheck(
            count: 400,
            input: Gen.element(of: Self.filterLevels).array(of: 1...3).array(of: 1...6),
            Gen.bool.array(of: 6)
        ) { levelLists, endsWithHash in
            let filters = levelLists.enumerated().map { index, levels in
                let levels = levels.compactMap { $0 }
                return (levels + (endsWithHash[index % endsWithHash.count] ? ["#"] : [])).joined(separator: "/")
            }
            let cover = TopicFilterCover(covering: filters).filters
            for topic in Self.topics {
                let wanted = filters.contains { TopicFilterCover.matches($0, topic: topic) }
                let delivered = cover.filter { TopicFilterCover.matches($0, topic: topic) }.count
                #expect(delivered <= 1, "\(topic) matches \(delivered) of \(cover) (from \(filters))")
                if wanted { #expect(delivered == 1, "\(topic) is lost by \(cover) (from \(filters))") }
            }
            // `overlap` says what the exhaustive topics say.
            for first in filters {
                for second in filters {
                    let shared = Self.topics.contains {
                        TopicFilterCover.matches(first, topic: $0) && TopicFilterCover.matches(second, topic: $0)
                    }
                    #expect(TopicFilterCover.overlap(first, second) == shared, "\(first) and \(second)")
                }
            }
            let distinct = filters.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            let disjoint = distinct.indices.allSatisfy { i in
                distinct.indices.allSatisfy { j in i == j || !TopicFilterCover.overlap(distinct[i], distinct[j]) }
            }
            if disjoint { #expect(cover == distinct) }
        }
    }
}
