import FileFormats

/// A validated set of rules with an index from topics to the rules they match.
public struct RuleSet: Sendable {
    /// The rules, in file order.
    public let rules: [Rule]
    /// Every condition on a topic, rule by rule, leaf by leaf; `index` matches topics to positions here.
    let inputs: [Input]
    /// Per rule, per leaf: its comparison.
    let conditionCores: [[ConditionCore]]
    /// Per rule, per leaf: its `equals` value (nil for thresholds).
    let equalsValues: [[JSONValue?]]
    /// Every combination, flattened in preorder (a node, then its elements), so that evaluating one walks
    /// plain values; `combinationStarts` has each rule's first node, -1 for a single condition or a group.
    let combinationNodes: [CombinationNode]
    let combinationStarts: [Int32]
    /// Per rule: a group's `match` (nil for others).
    let matches: [Rule.Match?]
    /// Per rule: its `on_unknown`.
    let unknownPolicies: [Rule.UnknownPolicy]
    /// Per rule: whether some leaf (or a group's members) has a `stale` or a window, or the rule uses the
    /// clock otherwise: its instances have condition deadlines, and every reading steps them.
    let hasStaleConditions: [Bool]
    /// Per rule: its schedule (`active:`), if any.
    let schedules: [Rule.Schedule?]
    /// Per rule: whether some leaf (or a group's members) has a window.
    let hasWindows: [Bool]
    /// Per rule, per leaf: its window, if any.
    let windows: [[Rule.Window?]]
    /// Per rule: `keep_firing_for`, `outside_active` and `flapping`.
    let clockSettings: [ClockSettings]
    let index: TopicIndex
    /// The distinct payload fields the rules read, each once.
    let fields: [[String]]
    /// The per-reading part of each rule, in `rules` order.
    let cores: [RuleCore]
    /// Per rule: what a numeric reading needs, when that is a comparison alone.
    let numericChecks: [NumericCheck]
    /// Per leaf of every rule, at `firstInputs[rule] + leaf` (as `inputs`): its comparison when a numeric
    /// reading needs nothing else (no window, no `equals`).
    let leafComparisons: [ConditionCore.Comparison?]
    /// Per rule: the position of its first leaf in `inputs` and `leafComparisons`.
    let firstInputs: [Int32]
    /// UTF-8 of `seq` (at `sequenceKeyRange`) and of every one-level field, for `PayloadScanner`.
    let keyBytes: [UInt8]
    /// Where each field's key is in `keyBytes`, by field index; nil for a dotted path (full parser).
    let keyRanges: [Range<Int>?]
    static let sequenceKeyRange = 0..<3
    private let indexByID: [String: Int]
    /// Each rule's `definitionHash`, computed once (its fingerprint is built by reflection: slow to repeat per
    /// transition; the fingerprints themselves are not kept, about 700 bytes per rule).
    public let definitionHashes: [String]

    /// What the loader accepted but the user should know about (`check` prints them as `warning:`): a duration
    /// window that keeps up to the default `max_samples` because none was stated.
    public let warnings: [Diagnostic]

    /// Indexes `rules`; they must already be validated (use `RuleLoader.load`).
    public init(rules: [Rule], warnings: [Diagnostic] = []) {
        self.rules = rules
        self.warnings = warnings
        self.inputs = rules.indices.flatMap { ruleIndex in
            rules[ruleIndex].leaves.indices.map { Input(rule: Int32(ruleIndex), leaf: Int32($0)) }
        }
        self.index = TopicIndex(patterns: inputs.map { rules[Int($0.rule)].leaves[Int($0.leaf)].topic })
        var fields: [[String]] = []
        var fieldIndexes: [[String]: Int] = [:]
        let conditionCores = rules.map { rule in
            rule.leaves.map { leaf in
                let fieldIndex =
                    fieldIndexes[leaf.field]
                    ?? {
                        fields.append(leaf.field)
                        fieldIndexes[leaf.field] = fields.count - 1
                        return fields.count - 1
                    }()
                return ConditionCore(leaf, fieldIndex: fieldIndex)
            }
        }
        self.conditionCores = conditionCores
        self.equalsValues = rules.map { rule in
            rule.leaves.map { leaf in
                if case .equals(let value) = leaf.condition { value } else { nil }
            }
        }
        var nodes: [CombinationNode] = []
        self.combinationStarts = rules.map { rule in
            guard let combination = rule.combination else { return -1 }
            defer { CombinationNode.flatten(combination, into: &nodes) }
            return Int32(nodes.count)
        }
        self.combinationNodes = nodes
        self.matches = rules.map { $0.grouping?.match }
        self.unknownPolicies = rules.map(\.onUnknown)
        self.hasStaleConditions = rules.map { $0.leaves.contains { $0.staleMilliseconds != nil } || $0.usesClock }
        self.schedules = rules.map(\.schedule)
        self.hasWindows = rules.map { $0.leaves.contains { $0.window != nil } }
        self.windows = rules.map { $0.leaves.map(\.window) }
        self.clockSettings = rules.map(ClockSettings.init)
        self.cores = rules.indices.map { RuleCore(rules[$0], condition: conditionCores[$0][0]) }
        self.numericChecks = cores.map(NumericCheck.init)
        self.leafComparisons = conditionCores.flatMap { $0.map(\.numericComparison) }
        var firstInput: Int32 = 0
        self.firstInputs = rules.map { rule in
            defer { firstInput += Int32(rule.leaves.count) }
            return firstInput
        }
        self.fields = fields
        var keyBytes = Array("seq".utf8)
        self.keyRanges = fields.map { field in
            guard field.count == 1 else { return nil }
            let start = keyBytes.count
            keyBytes += field[0].utf8
            return start..<keyBytes.count
        }
        self.keyBytes = keyBytes
        self.indexByID = Dictionary(rules.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
        self.definitionHashes = rules.map(\.definitionHash)
    }

    /// The position in `rules` of the rule with `id`.
    public func index(ofRuleWithID id: String) -> Int? {
        indexByID[id]
    }

    /// Whether some condition of some rule reads `topic`.
    func reads(topic: String) -> Bool {
        var found: [Int] = []
        index.matches(TopicIndex.levels(of: topic), into: &found)
        return !found.isEmpty
    }

    /// The distinct MQTT filters to subscribe to (every condition's), in first-use order.
    public var filters: [String] {
        var seen = Set<String>()
        return rules.flatMap { $0.leaves.map(\.topic.filter) }.filter { seen.insert($0).inserted }
    }

    /// One node of a flattened combination: a leaf (`value` is its index), or `all`/`any`/`not` (`value` is
    /// how many elements follow).
    struct CombinationNode: Sendable {
        enum Kind: UInt8, Sendable {
            case leaf, all, any, not
        }
        var kind: Kind
        var value: Int32

        static func flatten(_ combination: Rule.Combination, into nodes: inout [CombinationNode]) {
            switch combination {
            case .leaf(let index): nodes.append(CombinationNode(kind: .leaf, value: Int32(index)))
            case .all(let elements), .any(let elements):
                let kind: Kind = if case .all = combination { .all } else { .any }
                nodes.append(CombinationNode(kind: kind, value: Int32(elements.count)))
                for element in elements { flatten(element, into: &nodes) }
            case .not(let element):
                nodes.append(CombinationNode(kind: .not, value: 1))
                flatten(element, into: &nodes)
            }
        }
    }

    /// One condition on a topic: a rule's leaf (leaf 0 of a single-condition or grouped rule).
    struct Input: Sendable {
        var rule: Int32
        var leaf: Int32
    }

    /// Leaves that capture fewer names than their rule (`check` prints them as notes): a reading on such a
    /// leaf re-evaluates every instance of its rule, which is what a shared leaf means and what it costs.
    public var sharedConditionNotes: [Diagnostic] {
        rules.flatMap { rule -> [Diagnostic] in
            guard rule.combination != nil else { return [] }
            let names = rule.captureNames.map { "{\($0)}" }.joined(separator: ", ")
            return rule.leaves.filter { $0.topic.captureNames.count < rule.captureNames.count }.map { leaf in
                Diagnostic(
                    leaf.location,
                    "rule '\(rule.id)': '\(leaf.topic)' captures fewer names than the rule (\(names)): every reading "
                        + "on it re-evaluates every instance of the rule"
                )
            }
        }
    }

    static func byteText(_ bytes: Int) -> String {
        if bytes >= 10_000_000 { return "\(bytes / 1_000_000) MB" }
        if bytes >= 10_000 { return "\(bytes / 1000) kB" }
        return "\(bytes) bytes"
    }

    /// The rule with this id.
    public func rule(withID id: String) -> Rule? {
        indexByID[id].map { rules[$0] }
    }
}

/// A trie over topic levels: matching a topic costs what its matching rules cost, not what all rules cost.
struct TopicIndex: Sendable {
    struct Node: Sendable {
        var literals: [String: Int] = [:]
        var singleLevel: Int?
        /// Rules whose pattern ends with `#` here.
        var remainder: [Int] = []
        /// Rules whose pattern ends exactly here.
        var terminal: [Int] = []
    }

    private(set) var nodes: [Node] = [Node()]

    init(patterns: [TopicPattern]) {
        for (ruleIndex, pattern) in patterns.enumerated() {
            var current = 0
            for level in pattern.levels {
                switch level {
                case .remainingLevels:
                    nodes[current].remainder.append(ruleIndex)
                    current = -1
                case .literal(let text):
                    if let next = nodes[current].literals[text] {
                        current = next
                    } else {
                        nodes.append(Node())
                        nodes[current].literals[text] = nodes.count - 1
                        current = nodes.count - 1
                    }
                case .anyLevel, .capture:
                    if let next = nodes[current].singleLevel {
                        current = next
                    } else {
                        nodes.append(Node())
                        nodes[current].singleLevel = nodes.count - 1
                        current = nodes.count - 1
                    }
                }
                if current < 0 { break }
            }
            if current >= 0 { nodes[current].terminal.append(ruleIndex) }
        }
    }

    /// A topic's levels, split on `/` byte by byte (splitting `String` by `Character` costs far more).
    static func levels(of topic: String) -> [Substring] {
        topic.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map { Substring($0) }
    }

    /// Appends the indexes of the rules whose pattern matches `levels`, in ascending order.
    func matches(_ levels: [Substring], into result: inout [Int]) {
        let start = result.count
        // $-topics are matched by wildcards only below the first level.
        let systemTopic = levels.first?.hasPrefix("$") ?? false
        collect(node: 0, levels: levels, depth: 0, systemTopic: systemTopic, into: &result)
        if result.count - start > 1 { result[start...].sort() }
    }

    private func collect(node index: Int, levels: [Substring], depth: Int, systemTopic: Bool, into result: inout [Int])
    {
        let node = nodes[index]
        let wildcardsAllowed = !(depth == 0 && systemTopic)
        if wildcardsAllowed { result += node.remainder }
        guard depth < levels.count else {
            result += node.terminal
            return
        }
        if let next = node.literals[String(levels[depth])] {
            collect(node: next, levels: levels, depth: depth + 1, systemTopic: systemTopic, into: &result)
        }
        if wildcardsAllowed, let next = node.singleLevel {
            collect(node: next, levels: levels, depth: depth + 1, systemTopic: systemTopic, into: &result)
        }
    }
}

/// A set of topic patterns that answers "does any match this topic" at the cost of one trie walk,
/// whatever the number of patterns.
public struct TopicPatternSet: Sendable {
    private let index: TopicIndex
    /// When every pattern ends with a literal level: those literals, so most topics are rejected by
    /// their last level alone.
    private let lastLevels: Set<Substring>?
    public let isEmpty: Bool

    public init(_ patterns: [TopicPattern]) {
        index = TopicIndex(patterns: patterns)
        isEmpty = patterns.isEmpty
        var lastLevels: Set<Substring>? = []
        for pattern in patterns {
            guard case .literal(let text)? = pattern.levels.last else {
                lastLevels = nil
                break
            }
            lastLevels?.insert(Substring(text))
        }
        self.lastLevels = lastLevels
    }

    /// Whether some pattern matches `topic`.
    public func matches(_ topic: String) -> Bool {
        guard !isEmpty else { return false }
        if let lastLevels {
            let utf8 = topic.utf8
            let start = utf8.lastIndex(of: UInt8(ascii: "/")).map { utf8.index(after: $0) } ?? utf8.startIndex
            guard lastLevels.contains(Substring(utf8[start...])) else { return false }
        }
        var found: [Int] = []
        index.matches(TopicIndex.levels(of: topic), into: &found)
        return !found.isEmpty
    }
}
