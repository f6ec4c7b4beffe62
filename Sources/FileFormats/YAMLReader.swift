import Yams

/// Reads a composed YAML tree with positions, collecting every problem instead of stopping at the first.
/// Shared by rule files, rule test files and device files.
public struct YAMLReader {
    public let file: String
    public private(set) var diagnostics: [Diagnostic] = []
    /// What is accepted but worth a look (`check` prints these as `warning:`).
    public private(set) var warnings: [Diagnostic] = []

    public init(file: String) {
        self.file = file
    }

    public func location(_ node: Node?) -> SourceLocation {
        let mark = node?.mark
        return SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    public mutating func error(_ node: Node?, _ message: String) {
        diagnostics.append(Diagnostic(location(node), message))
    }

    /// Something accepted that the user should know about.
    public mutating func warning(at location: SourceLocation, _ message: String) {
        warnings.append(Diagnostic(location, message))
    }

    /// A problem found after the node was read, at the position recorded then.
    public mutating func error(at location: SourceLocation, _ message: String) {
        diagnostics.append(Diagnostic(location, message))
    }

    /// Parses the document; a syntax error becomes a diagnostic and nil.
    public mutating func compose(_ text: String) -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let error as YamlError {
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
                .composer(_, let problem, let mark, _):
                diagnostics.append(
                    Diagnostic(
                        SourceLocation(file: file, line: mark.line, column: mark.column),
                        "YAML syntax: \(problem)"
                    )
                )
            case .duplicatedKeysInMapping(let duplicates, let context):
                diagnostics.append(
                    Diagnostic(
                        SourceLocation(file: file, line: context.mark.line, column: context.mark.column),
                        "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) in a mapping"
                    )
                )
            case .reader(let problem, _, _, _):
                diagnostics.append(Diagnostic(SourceLocation(file: file, line: 1, column: 1), "YAML: \(problem)"))
            default:
                diagnostics.append(Diagnostic(SourceLocation(file: file, line: 1, column: 1), "YAML: \(error)"))
            }
            return nil
        } catch {
            diagnostics.append(Diagnostic(SourceLocation(file: file, line: 1, column: 1), "YAML: \(error)"))
            return nil
        }
    }

    /// The entries of a mapping with string keys; reports keys not in `allowed` (with a suggestion).
    public mutating func mapping(
        _ node: Node,
        what: String,
        allowed: [String]
    ) -> [String: (key: Node, value: Node)]? {
        guard case .mapping(let mapping) = node else {
            error(node, "\(what) must be a mapping of keys to values")
            return nil
        }
        var entries: [String: (key: Node, value: Node)] = [:]
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                error(key, "keys of \(what) must be plain names")
                continue
            }
            let name = scalar.string
            guard allowed.contains(name) else {
                let hint = YAMLReader.closest(to: name, in: allowed).map { " (did you mean '\($0)'?)" } ?? ""
                error(key, "unknown key '\(name)' in \(what)\(hint)")
                continue
            }
            entries[name] = (key, value)
        }
        return entries
    }

    /// A plain string scalar.
    public mutating func string(_ node: Node, what: String) -> String? {
        guard case .scalar(let scalar) = node, YAMLReader.tagName(node) != .null || scalar.style != .plain else {
            error(node, "\(what) must be a string")
            return nil
        }
        return scalar.string
    }

    /// A finite number (an unquoted YAML int or float).
    public mutating func number(_ node: Node, what: String) -> Double? {
        guard case .scalar(let scalar) = node,
            scalar.style == .plain,
            YAMLReader.tagName(node) == .int || YAMLReader.tagName(node) == .float,
            let value = node.float
        else {
            error(node, "\(what) must be a number, got '\(node.scalar?.string ?? "a \(YAMLReader.kind(node))")'")
            return nil
        }
        guard value.isFinite else {
            error(node, "\(what) must be a finite number, got '\(scalar.string)'")
            return nil
        }
        return value
    }

    /// A non-negative integer.
    public mutating func integer(_ node: Node, what: String) -> Int? {
        guard YAMLReader.tagName(node) == .int, let value = node.int, value >= 0 else {
            error(node, "\(what) must be a whole number, got '\(node.scalar?.string ?? YAMLReader.kind(node))'")
            return nil
        }
        return value
    }

    /// A boolean.
    public mutating func bool(_ node: Node, what: String) -> Bool? {
        guard YAMLReader.tagName(node) == .bool, let value = node.bool else {
            error(node, "\(what) must be true or false")
            return nil
        }
        return value
    }

    /// A duration such as `500ms`, `10s`, `1h30m`.
    public mutating func duration(_ node: Node, what: String) -> Int64? {
        guard case .scalar(let scalar) = node, let value = RuleDuration.milliseconds(scalar.string) else {
            let text = node.scalar?.string ?? YAMLReader.kind(node)
            error(node, "\(what) '\(text)' is not a duration (use e.g. 500ms, 10s, 5m, 1h, 1h30m)")
            return nil
        }
        guard value <= RuleDuration.maximumMilliseconds else {
            error(node, "\(what) '\(scalar.string)' is longer than 100 years")
            return nil
        }
        return value
    }

    /// A sequence's items.
    public mutating func sequence(_ node: Node, what: String) -> [Node]? {
        guard case .sequence(let sequence) = node else {
            error(node, "\(what) must be a list")
            return nil
        }
        return Array(sequence)
    }

    /// Converts a YAML value to JSON: mappings (string keys), sequences, null, `true`/`false`, finite numbers,
    /// strings (YAML 1.1's other boolean words, `on`/`off`/`yes`/`no`, stay strings).
    public mutating func json(_ node: Node, what: String) -> JSONValue? {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain {
                switch YAMLReader.tagName(node) {
                case .null: return .null
                case .bool:
                    // YAML 1.1 also reads yes/no/on/off as booleans; in YAML 1.2, and in what a rule or device
                    // file means (`equals: on`, `payload: {state: off}`), they are the words written.
                    switch scalar.string.lowercased() {
                    case "true": return .bool(true)
                    case "false": return .bool(false)
                    default: return .string(scalar.string)
                    }
                case .int, .float:
                    guard let value = node.float, value.isFinite else {
                        error(node, "\(what) must hold finite numbers only")
                        return nil
                    }
                    return .number(value)
                default: break
                }
            }
            return .string(scalar.string)
        case .sequence(let sequence):
            var values: [JSONValue] = []
            for item in sequence {
                guard let value = json(item, what: what) else { return nil }
                values.append(value)
            }
            return .array(values)
        case .mapping(let mapping):
            var pairs: [(key: String, value: JSONValue)] = []
            for (key, value) in mapping {
                guard case .scalar(let scalar) = key else {
                    error(key, "keys in \(what) must be strings")
                    return nil
                }
                guard let converted = json(value, what: what) else { return nil }
                pairs.append((scalar.string, converted))
            }
            return .object(pairs)
        case .alias:
            error(node, "\(what) cannot use YAML aliases")
            return nil
        }
    }

    /// The resolved tag of a node (`int`, `float`, `str`, ...).
    public static func tagName(_ node: Node) -> Tag.Name {
        Tag.Name(rawValue: node.tag.description)
    }

    public static func kind(_ node: Node) -> String {
        switch node {
        case .scalar: "scalar"
        case .mapping: "mapping"
        case .sequence: "list"
        case .alias: "alias"
        }
    }

    /// `node` with YAML merge keys expanded (`<<: *anchor` or `<<: [*a, *b]`: explicit keys win, then the first
    /// mapping listed) and, with `droppingExtensionKeys`, every key that starts with `x-` removed (docker-compose's
    /// extension keys, where shared definitions are anchored). Merged keys keep their positions, so a problem in
    /// one is reported where it is written.
    public static func expandingMergeKeys(_ node: Node, droppingExtensionKeys: Bool) -> Node {
        switch node {
        case .mapping(let mapping):
            var explicit: [(Node, Node)] = []
            var merged: [(Node, Node)] = []
            for (key, value) in mapping {
                let name = key.scalar?.string
                if droppingExtensionKeys, let name, name.hasPrefix("x-") { continue }
                guard name == "<<" else {
                    explicit.append((key, expandingMergeKeys(value, droppingExtensionKeys: droppingExtensionKeys)))
                    continue
                }
                let sources: [Node] = if case .sequence(let list) = value { Array(list) } else { [value] }
                guard sources.allSatisfy({ if case .mapping = $0 { true } else { false } }) else {
                    explicit.append((key, value))  // reported as an unknown key '<<' by the reader
                    continue
                }
                for source in sources {
                    guard
                        case .mapping(let expanded) = expandingMergeKeys(
                            source,
                            droppingExtensionKeys: droppingExtensionKeys
                        )
                    else { continue }
                    for (mergedKey, mergedValue) in expanded
                    where !merged.contains(where: { $0.0.scalar?.string == mergedKey.scalar?.string }) {
                        merged.append((mergedKey, mergedValue))
                    }
                }
            }
            let written = Set(explicit.compactMap { $0.0.scalar?.string })
            let pairs = explicit + merged.filter { !written.contains($0.0.scalar?.string ?? "") }
            return .mapping(Node.Mapping(pairs, mapping.tag, mapping.style, mapping.mark))
        case .sequence(let sequence):
            let nodes = sequence.map { expandingMergeKeys($0, droppingExtensionKeys: droppingExtensionKeys) }
            return .sequence(Node.Sequence(nodes, sequence.tag, sequence.style, sequence.mark))
        default:
            return node
        }
    }

    /// Whether `node` (a mapping) has an unknown key that was reported as a misspelling of `key`: a missing `key`
    /// is then not a problem of its own.
    public static func misspells(_ key: String, in node: Node, allowed: [String]) -> Bool {
        guard case .mapping(let mapping) = node else { return false }
        return mapping.keys.contains { candidate in
            guard let name = candidate.string, !allowed.contains(name) else { return false }
            return closest(to: name, in: allowed) == key
        }
    }

    /// The allowed name within edit distance 2, if any.
    public static func closest(to name: String, in candidates: [String]) -> String? {
        candidates
            .map { ($0, editDistance(name, $0)) }
            .filter { $0.1 <= 2 }
            .min { $0.1 < $1.1 }?.0
    }

    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8)
        let b = Array(b.utf8)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        var current = previous
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
