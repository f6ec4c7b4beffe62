import ArgumentParser
import CommandLineOptions
import EngineAPIClient
import EngineHTTP
import FileFormats
import Foundation
import RuleTools
import Rules
import RulesEngineDaemon
import ServiceSupport

struct Explain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one rule's instances in a running engine: state, last value, timers, last reason.",
        discussion: "Without a rule id: every loaded rule with its instances by state."
    )

    @Argument(help: "The rule's id (omit it to list every rule).") var ruleID: String?
    @Option(help: "The running engine's --http address.") var engine: String = "http://127.0.0.1:9464"

    func run() async throws {
        let base = engine.hasPrefix("http://") || engine.hasPrefix("https://") ? engine : "http://" + engine
        let rules = try await fetch(base + "/api/rules")
        let query = ruleID.map { "?rule=" + ($0.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? $0) }
        let instances = try await fetch(base + "/api/instances" + (query ?? ""))
        guard case .array(let allRules) = rules, case .array(let found) = instances else {
            throw ExplainError("\(base) did not answer like a rules engine")
        }
        guard let ruleID else {
            print(InstanceTable.ruleList(rules: allRules, instances: found))
            return
        }
        guard let rule = allRules.first(where: { $0["id"] == .string(ruleID) }) else {
            throw ExplainError(InstanceTable.unknownRule(ruleID, rules: allRules))
        }
        print(InstanceTable.render(ruleID: ruleID, rule: rule, instances: found, now: WallClock.nowMilliseconds()))
    }

    private func fetch(_ address: String) async throws -> JSONValue {
        do {
            return try await EngineAPIClient.json(at: address)
        } catch let failure as EngineAPIClient.Failure {
            throw ExplainError(failure.description)
        }
    }
}

/// Why `explain` could not show the table (no usage text: the command line was right).
struct ExplainError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
