import FileFormats
import Rules

/// What the engine's surfaces read (the HTTP API and the live page): its health, its rules, its instances and the
/// live picture. The MQTT mode's `RulesEngineService` is one; a surface depends on this, not on a mode.
public protocol EngineReadModel: Sendable {
    /// Why the engine is not healthy (not connected, no rules), or nil when it is.
    var healthProblem: String? { get }
    /// The rules in effect.
    var ruleSet: RuleSet { get }
    /// Every rule instance (of one rule, when given), as `/api/instances` shows them.
    func instanceReports(ruleID: String?) -> [InstanceReport]
    /// What the live page draws now: sensors, instances, actuators and the last commands.
    func liveSnapshot() -> JSONValue
}

extension RulesEngineService: EngineReadModel {}
