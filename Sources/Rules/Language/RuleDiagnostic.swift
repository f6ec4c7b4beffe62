import FileFormats

/// One problem in a rule file, printed as `FILE:LINE:COL: error: MESSAGE`.
public typealias RuleDiagnostic = Diagnostic

/// A rule set that failed validation: every problem found, in file order.
public struct RuleLoadError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [RuleDiagnostic]

    public init(diagnostics: [RuleDiagnostic]) {
        self.diagnostics = diagnostics
    }

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// The text of one rule file and the path it is reported under.
public struct RuleSource: Sendable {
    public var path: String
    public var text: String

    public init(path: String, text: String) {
        self.path = path
        self.text = text
    }
}
