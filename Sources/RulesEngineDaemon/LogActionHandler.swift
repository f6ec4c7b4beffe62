import Logging
import Rules

/// Writes the action's message as a structured log line.
public struct LogActionHandler: ActionHandler {
    let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    public func handles(_ action: RenderedAction) -> Bool {
        if case .log = action { return true }
        return false
    }

    public func perform(_ action: FiredAction) async throws {
        guard case .log(let message) = action.action else { return }
        let level: Logger.Level =
            switch action.severity {
            case .info: .info
            case .warning: .warning
            case .critical: .critical
            }
        logger.log(
            level: level,
            "\(message)",
            metadata: [
                "rule": "\(action.ruleID)",
                "transition": "\(action.transition.rawValue)",
                "labels": "\(action.labels.map(\.description).joined(separator: ","))",
                "reason": "\(action.reason)",
            ]
        )
    }
}
