import Rules

/// Runs one kind of action. Add a handler in one file: conform, and list it in `RulesEngineService`.
public protocol ActionHandler: Sendable {
    /// Whether this handler runs `action`.
    func handles(_ action: RenderedAction) -> Bool
    /// Runs the action; throws when it failed (the failure is logged and counted).
    func perform(_ action: FiredAction) async throws
}
