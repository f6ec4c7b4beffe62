/// A string with `{name}` placeholders, parsed once when the rule is loaded.
public struct Template: Hashable, Sendable, CustomStringConvertible {
    enum Part: Hashable, Sendable {
        case text(String)
        case placeholder(String)
    }

    let parts: [Part]
    /// The source text.
    public let description: String

    /// Parses `{name}` placeholders; `{{` and `}}` stand for literal braces.
    public init(_ text: String) {
        description = text
        var parts: [Part] = []
        var literal = ""
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            let next = text.index(after: index)
            if character == "{", next < text.endIndex, text[next] == "{" {
                literal.append("{")
                index = text.index(after: next)
            } else if character == "}", next < text.endIndex, text[next] == "}" {
                literal.append("}")
                index = text.index(after: next)
            } else if character == "{", let close = text[next...].firstIndex(of: "}"),
                TopicPattern.isValidCaptureName(String(text[next..<close]))
            {
                if !literal.isEmpty { parts.append(.text(literal)) }
                literal = ""
                parts.append(.placeholder(String(text[next..<close])))
                index = text.index(after: close)
            } else {
                literal.append(character)
                index = next
            }
        }
        if !literal.isEmpty { parts.append(.text(literal)) }
        self.parts = parts
    }

    /// The placeholder names used.
    public var placeholders: [String] {
        parts.compactMap { if case .placeholder(let name) = $0 { name } else { nil } }
    }

    /// The single placeholder when the template is nothing else (`"{value}"`), for typed substitution.
    var soloPlaceholder: String? {
        if parts.count == 1, case .placeholder(let name) = parts[0] { return name }
        return nil
    }

    /// The literal text (without placeholders), to check a topic template for wildcards.
    var literalText: String {
        parts.map { if case .text(let text) = $0 { text } else { "" } }.joined()
    }

    /// Substitutes placeholders with `lookup`; unknown names stay as written.
    public func render(_ lookup: (String) -> String?) -> String {
        var output = ""
        for part in parts {
            switch part {
            case .text(let text): output += text
            case .placeholder(let name): output += lookup(name) ?? "{\(name)}"
            }
        }
        return output
    }
}
