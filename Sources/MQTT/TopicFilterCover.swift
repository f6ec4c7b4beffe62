/// The subscriptions that deliver every message of a set of MQTT topic filters exactly once.
///
/// A broker sends a message once per subscription of the client that matches its topic, so two overlapping
/// filters (`sensors/chilled/+/t` and `sensors/+/room-1/t`) deliver `sensors/chilled/room-1/t` twice. The cover
/// replaces every group of overlapping filters by the narrowest filter that matches all of them
/// (`sensors/+/+/t`), so that no topic matches two of its filters. Filters that overlap nothing stay as they
/// are. It may match topics that none of the given filters matches (the receiver routes those nowhere); it
/// never misses one that a given filter matches.
public struct TopicFilterCover: Sendable, Equatable {
    /// The filters to subscribe to, in the order of their first given filter. No topic matches two of them.
    public let filters: [String]

    /// The cover of `filters` (valid MQTT filters; duplicates allowed).
    public init(covering filters: [String]) {
        let trie = FilterTrie()
        var merged: [Int: (levels: [Substring], order: Int)] = [:]
        var nextID = 0
        var seen = Set<String>()
        for (order, filter) in filters.enumerated() where seen.insert(filter).inserted {
            var levels = filter.split(separator: "/", omittingEmptySubsequences: false)
            var first = order
            // A merged filter can overlap filters that neither of its parts overlapped: look again until none.
            while case let overlapping = trie.overlapping(levels), !overlapping.isEmpty {
                for id in overlapping {
                    guard let other = merged.removeValue(forKey: id) else { continue }
                    trie.remove(other.levels, id: id)
                    levels = Self.narrowestFilter(matching: levels, other.levels)
                    first = min(first, other.order)
                }
            }
            trie.insert(levels, id: nextID)
            merged[nextID] = (levels, first)
            nextID += 1
        }
        self.filters = merged.values.sorted { $0.order < $1.order }.map { $0.levels.joined(separator: "/") }
    }

    /// Whether `topic` matches `filter`, as a broker decides it (`#` also matches the parent level; wildcards
    /// at the first level do not match topics that start with `$`).
    public static func matches(_ filter: String, topic: String) -> Bool {
        let filterLevels = filter.split(separator: "/", omittingEmptySubsequences: false)
        let topicLevels = topic.split(separator: "/", omittingEmptySubsequences: false)
        if topic.hasPrefix("$"), let first = filterLevels.first, first == "+" || first == "#" { return false }
        for (index, level) in filterLevels.enumerated() {
            if level == "#" { return true }
            guard index < topicLevels.count, level == "+" || level == topicLevels[index] else { return false }
        }
        return filterLevels.count == topicLevels.count
    }

    /// Whether some topic matches both filters.
    public static func overlap(_ first: String, _ second: String) -> Bool {
        let trie = FilterTrie()
        trie.insert(first.split(separator: "/", omittingEmptySubsequences: false), id: 0)
        return !trie.overlapping(second.split(separator: "/", omittingEmptySubsequences: false)).isEmpty
    }

    /// Level by level: the same literal stays, different ones become `+`; `#`, or one filter ending where the
    /// other goes on, ends it with `#` (which also matches the parent level).
    static func narrowestFilter(matching first: [Substring], _ second: [Substring]) -> [Substring] {
        var result: [Substring] = []
        for index in 0..<max(first.count, second.count) {
            guard index < first.count, index < second.count, first[index] != "#", second[index] != "#" else {
                result.append("#")
                break
            }
            result.append(first[index] == second[index] ? first[index] : "+")
        }
        return result
    }
}

/// Filters by level, to find the ones a filter overlaps without comparing it with every one.
private struct FilterTrie {
    final class Node {
        var literals: [Substring: Node] = [:]
        var plus: Node?
        /// Filters that end here.
        var ending: Set<Int> = []
        /// Filters whose next level is `#`.
        var hash: Set<Int> = []
        var isEmpty: Bool { literals.isEmpty && plus == nil && ending.isEmpty && hash.isEmpty }
    }

    let root = Node()

    func insert(_ levels: [Substring], id: Int) {
        var node = root
        for level in levels {
            if level == "#" {
                node.hash.insert(id)
                return
            }
            if level == "+" {
                if node.plus == nil { node.plus = Node() }
                node = node.plus!
            } else {
                if node.literals[level] == nil { node.literals[level] = Node() }
                node = node.literals[level]!
            }
        }
        node.ending.insert(id)
    }

    func remove(_ levels: [Substring], id: Int) {
        var path: [(Node, Substring)] = []
        var node = root
        for level in levels {
            if level == "#" {
                node.hash.remove(id)
                break
            }
            guard let next = level == "+" ? node.plus : node.literals[level] else { return }
            path.append((node, level))
            node = next
        }
        if levels.last != "#" { node.ending.remove(id) }
        // Prune the branches left empty.
        for (parent, level) in path.reversed() {
            let child = level == "+" ? parent.plus : parent.literals[level]
            guard let child, child.isEmpty else { break }
            if level == "+" { parent.plus = nil } else { parent.literals[level] = nil }
        }
    }

    /// The ids of the stored filters that some topic matching `levels` also matches.
    func overlapping(_ levels: [Substring]) -> [Int] {
        var found = Set<Int>()
        visit(root, levels[...], atRoot: true, into: &found)
        return found.sorted()
    }

    private func visit(_ node: Node, _ levels: ArraySlice<Substring>, atRoot: Bool, into found: inout Set<Int>) {
        let dollar = atRoot && levels.first?.hasPrefix("$") == true
        // A stored `#` here matches whatever the filter goes on with (but not a `$` topic at the root).
        if !dollar { found.formUnion(node.hash) }
        guard let level = levels.first else {
            found.formUnion(node.ending)
            return
        }
        let rest = levels.dropFirst()
        switch level {
        case "#":
            collectAll(node, skippingDollar: atRoot, into: &found)
        case "+":
            for (literal, child) in node.literals where !(atRoot && literal.hasPrefix("$")) {
                visit(child, rest, atRoot: false, into: &found)
            }
            if let plus = node.plus { visit(plus, rest, atRoot: false, into: &found) }
        default:
            if let child = node.literals[level] { visit(child, rest, atRoot: false, into: &found) }
            if !dollar, let plus = node.plus { visit(plus, rest, atRoot: false, into: &found) }
        }
    }

    private func collectAll(_ node: Node, skippingDollar: Bool, into found: inout Set<Int>) {
        found.formUnion(node.ending)
        found.formUnion(node.hash)
        for (literal, child) in node.literals where !(skippingDollar && literal.hasPrefix("$")) {
            collectAll(child, skippingDollar: false, into: &found)
        }
        if let plus = node.plus { collectAll(plus, skippingDollar: false, into: &found) }
    }
}
