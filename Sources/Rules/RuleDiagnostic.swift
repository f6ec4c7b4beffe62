/// One problem in a rule file, printed as `FILE:LINE:COL: error: MESSAGE`.
public struct RuleDiagnostic: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var location: SourceLocation
    public var message: String

    public init(_ location: SourceLocation, _ message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): error: \(message)" }

    public static func < (lhs: RuleDiagnostic, rhs: RuleDiagnostic) -> Bool {
        (lhs.location.file, lhs.location.line, lhs.location.column, lhs.message)
            < (rhs.location.file, rhs.location.line, rhs.location.column, rhs.message)
    }
}

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
