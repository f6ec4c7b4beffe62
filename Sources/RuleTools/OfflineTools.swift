import FileFormats
import Foundation
import InputFiles
import Rules
import Simulation

/// `rules-engine check`, `replay`, `diff` and `test`: offline, deterministic, no broker.
/// Each returns the process exit code and writes through the given sinks (stdout, stderr).
public struct OfflineTools: Sendable {
    var standardOutput: @Sendable (String) -> Void
    var standardError: @Sendable (String) -> Void

    /// Writes lines to the given sinks.
    public init(
        standardOutput: @escaping @Sendable (String) -> Void,
        standardError: @escaping @Sendable (String) -> Void
    ) {
        self.standardOutput = standardOutput
        self.standardError = standardError
    }

    /// Validates rule files or folders; prints one `FILE:LINE:COL: error: MESSAGE` line per problem. A device file
    /// among them (a top-level `devices:`) is checked as a device file.
    public func check(_ paths: [String]) -> Int32 {
        do {
            let sources = try RuleFiles.sources(at: paths)
            // Each file's YAML is composed once to tell a device file from a rule file.
            let isDevice = sources.map { DeviceLoader.isDeviceFile($0.text) }
            let devices = zip(sources, isDevice).filter { $0.1 }.map(\.0)
            let rules = zip(sources, isDevice).filter { !$0.1 }.map(\.0)
            var status: Int32 = 0
            if !devices.isEmpty { status = checkDevices(devices) }
            if !rules.isEmpty || devices.isEmpty { status = max(status, checkRules(rules)) }
            return status
        } catch {
            report(error)
            return 1
        }
    }

    /// Validates device files or folders; prints every problem as `FILE:LINE:COL: error: MESSAGE`.
    public func checkDevices(_ paths: [String]) -> Int32 {
        do {
            return checkDevices(try RuleFiles.sources(at: paths))
        } catch {
            report(error)
            return 1
        }
    }

    private func checkDevices(_ sources: [RuleSource]) -> Int32 {
        do {
            let devices = try DeviceLoader.load(sources.map { (path: $0.path, text: $0.text) })
            standardError("\(devices.count) device(s) valid")
            return 0
        } catch {
            for diagnostic in error.diagnostics { standardError(diagnostic.description) }
            return 1
        }
    }

    private func checkRules(_ sources: [RuleSource]) -> Int32 {
        do {
            let ruleSet = try RuleLoader.load(sources, zones: .system)
            for note in ruleSet.sharedConditionNotes {
                standardError("\(note.location): note: \(note.message)")
            }
            for warning in ruleSet.warnings { standardError("\(warning.location): warning: \(warning.message)") }
            standardError("\(ruleSet.rules.count) rule(s) valid")
            return 0
        } catch {
            report(error)
            return 1
        }
    }

    /// Replays recorded readings and prints each action as a JSON line.
    public func replay(rules: String, readings: String, end: String?) -> Int32 {
        do {
            let ruleSet = try RuleFiles.load([rules])
            let recorded = try loadReadings(readings)
            let outcome = Replay.run(ruleSet, readings: recorded, end: try end.map(parseEnd))
            for action in outcome.actions { standardOutput(Replay.jsonLine(action)) }
            for event in outcome.flapping {
                guard case .flapping(let rule, let labels, let time, let isFlapping, let percent) = event else {
                    continue
                }
                let instance = labels.isEmpty ? "" : " " + labels.map(\.description).joined(separator: ",")
                standardError(
                    "rule \(rule)\(instance) \(isFlapping ? "started" : "stopped") flapping at \(time) "
                        + "(\(JSONValue.format(percent.rounded())) % of its last results changed)"
                )
            }
            if !outcome.limited.isEmpty {
                standardError("\(outcome.limited.count) transition(s) held back by max_transitions")
            }
            for (code, count) in outcome.unusable.sorted(by: { $0.key < $1.key }) {
                standardError("\(count) reading(s) unusable by a rule: \(code)")
            }
            if end == nil, outcome.pendingTimers > 0 {
                standardError(
                    "\(outcome.pendingTimers) timer(s) pending after the last reading were not run "
                        + "(the next at \(outcome.nextPendingTimer ?? 0)); pass --end to run the clock further"
                )
            }
            if outcome.missing > 0 { standardError("\(outcome.missing) reading(s) missing (gaps in seq)") }
            if outcome.duplicates > 0 { standardError("\(outcome.duplicates) duplicate reading(s) dropped") }
            if outcome.chainStepsCut > 0 {
                standardError(
                    "\(outcome.chainStepsCut) publish(es) not fed back into the rules: a chain of rules went on for "
                        + "more than \(Replay.chainStepLimit) steps from one reading (rules that feed each other in a loop?)"
                )
            }
            return 0
        } catch {
            report(error)
            return 2
        }
    }

    /// Replays the same readings through two rule sets; prints what differs; exit 1 when anything does.
    /// `end` runs the clock on after the last reading, as `replay --end` does.
    public func diff(old: String, new: String, readings: String, end: String? = nil) -> Int32 {
        do {
            let oldRules = try RuleFiles.load([old])
            let newRules = try RuleFiles.load([new])
            let recorded = try loadReadings(readings)
            let endTime = try end.map(parseEnd)
            let oldOutcome = Replay.run(oldRules, readings: recorded, end: endTime)
            let newOutcome = Replay.run(newRules, readings: recorded, end: endTime)
            if endTime == nil {
                for (name, outcome) in [("old", oldOutcome), ("new", newOutcome)] where outcome.pendingTimers > 0 {
                    standardError(
                        "\(outcome.pendingTimers) timer(s) pending after the last reading in the \(name) rules were "
                            + "not run: a fire due later shows as removed, not moved; pass --end to run the clock further"
                    )
                }
            }
            let changes = ActionDiff.compare(old: oldOutcome.actions, new: newOutcome.actions)
            for change in changes { standardOutput(ActionDiff.describe(change)) }
            standardError(changes.isEmpty ? "no differences" : "\(changes.count) difference(s)")
            return changes.isEmpty ? 0 : 1
        } catch {
            report(error)
            return 2
        }
    }

    /// Runs rule unit test files; prints PASS/FAIL per test; exit 1 on any failure.
    public func test(_ files: [String]) -> Int32 {
        var passed = 0
        var failed = 0
        let testFiles: [String]
        do {
            testFiles = try RuleFiles.testFiles(at: files)
        } catch {
            report(error)
            return 1
        }
        for file in testFiles {
            do {
                let text = try RuleFiles.read(file)
                let suite = try RuleTestSuite.parse(RuleSource(path: file, text: text))
                let directory = (file as NSString).deletingLastPathComponent
                let ruleSet = try RuleFiles.load(
                    suite.ruleFiles.map { $0.hasPrefix("/") ? $0 : (directory.isEmpty ? $0 : directory + "/" + $0) }
                )
                for result in suite.run(with: ruleSet) {
                    if result.passed {
                        passed += 1
                        standardOutput("PASS  \(file): \(result.name)")
                    } else {
                        failed += 1
                        standardOutput("FAIL  \(file): \(result.name)\n\(result.report)")
                    }
                    for note in result.notes { standardOutput("      \(note)") }
                }
            } catch {
                // The reasons go with the verdict, where a reader of the results looks, as check prints them.
                failed += 1
                standardOutput("FAIL  \(file): could not run")
                for line in Self.problemLines(error) { standardOutput("      \(line)") }
            }
        }
        standardOutput("\(passed) passed, \(failed) failed")
        return failed == 0 ? 0 : 1
    }

    private func loadReadings(_ path: String) throws -> [Reading] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw RuleFilesError("\(path): cannot read the readings file")
        }
        return try RecordedReadings.parse(text, path: path)
    }

    private func parseEnd(_ text: String) throws -> Int64 {
        guard let end = Int64(text) ?? Timestamp.parseRFC3339(text) else {
            throw RuleFilesError("--end '\(text)' must be Unix milliseconds or RFC 3339")
        }
        guard Timestamp.validRange.contains(end) else {
            throw RuleFilesError("--end '\(text)' is outside years 1 to 9999")
        }
        return end
    }

    private func report(_ error: any Error) {
        for line in Self.problemLines(error) { standardError(line) }
    }

    /// One `FILE:LINE:COL: error: MESSAGE` line per problem, in file order.
    private static func problemLines(_ error: any Error) -> [String] {
        switch error {
        case let error as RuleLoadError: error.diagnostics.sorted().map(\.description)
        default: ["\(error)"]
        }
    }
}
