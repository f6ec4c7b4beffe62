import FileFormats
import Foundation
import Rules

/// A rule's text as written in its file, for the live page's explanation.
enum RuleSourceText {
    /// The lines of the rule's mapping, from its first line up to the next line indented less than the
    /// mapping (the next rule, or the end of the list); nil when the file cannot be read.
    static func block(of rule: Rule) -> String? {
        guard let text = try? String(contentsOfFile: rule.location.file, encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let first = rule.location.line - 1
        guard lines.indices.contains(first) else { return nil }
        let indent = rule.location.column - 1
        var block = [String(lines[first])]
        for line in lines[(first + 1)...] {
            let content = line.drop { $0 == " " }
            if !content.isEmpty, !content.hasPrefix("#"), line.count - content.count < indent { break }
            block.append(String(line))
        }
        while let last = block.last,
            last.trimmingCharacters(in: .whitespaces).isEmpty || last.drop(while: { $0 == " " }).hasPrefix("#")
        {
            block.removeLast()
        }
        return block.joined(separator: "\n")
    }
}
