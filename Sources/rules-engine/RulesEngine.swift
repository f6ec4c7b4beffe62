import ArgumentParser
import CommandLineOptions
import EngineHTTP
import FileFormats
import RuleTools
import Rules
import RulesEngineDaemon
import ServiceSupport
import Simulation

@main
struct RulesEngine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules-engine",
        abstract: "Evaluate threshold rules on sensor readings and drive actuators.",
        version: PackageVersion.text,
        subcommands: [Run.self, Check.self, Replay.self, Diff.self, Test.self, Explain.self, Schema.self]
    )
}

/// Prints protocol output on stdout and diagnostics on stderr, for the offline tools.
let tools = OfflineTools(
    standardOutput: { print($0) },
    standardError: { FileHandleOutput.standardError.write($0 + "\n") }
)

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate rule files or folders without connecting.")
    @Argument(help: "Rule files or folders.") var paths: [String]

    func run() throws {
        let code = tools.check(paths)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run rules over recorded readings; print actions as JSON lines."
    )
    @Option(help: "The rules folder.") var rules: String
    @Option(
        help: """
            Advance the clock to this time after the last reading (Unix ms or RFC 3339); without it the clock \
            stops at the last reading, and timers still pending then (a `for`, `stale`, a cooldown) are not run \
            (their count is printed on stderr).
            """
    )
    var end: String?
    @Argument(help: "Readings, one JSON object per line.") var readings: String

    func run() throws {
        let code = tools.replay(rules: rules, readings: readings, end: end)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the actions two rule sets take differently.")
    @Option(help: "The rules as they were.") var old: String
    @Option(help: "The rules as they are now.") var new: String
    @Option(help: "Advance the clock to this time after the last reading, as replay --end does.") var end: String?
    @Argument(help: "Readings, one JSON object per line.") var readings: String

    func run() throws {
        let code = tools.diff(old: old, new: new, readings: readings, end: end)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Test: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run rule unit test files.")
    @Argument(help: "Test files (*.test.yaml), or folders searched for them.") var files: [String]

    func run() throws {
        let code = tools.test(files)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Schema: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the JSON Schema of rule, rule test or device files (for editors' YAML support).",
        discussion: "docs/schema/ holds the same schemas; docs/rules.md shows how to point an editor at them."
    )

    enum Kind: String, ExpressibleByArgument, CaseIterable {
        case rules, tests, devices
    }

    @Argument(help: "rules, tests or devices.") var kind: Kind

    func run() {
        let document =
            switch kind {
            case .rules: RuleFileSchema.document
            case .tests: RuleTestFileSchema.document
            case .devices: DeviceFileSchema.document
            }
        print(document.prettyText, terminator: "")
    }
}
