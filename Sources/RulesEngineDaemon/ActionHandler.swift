import Rules

/// Runs one kind of action. Add a handler in one file: conform, and list it in `RulesEngineService`.
public protocol ActionHandler: Sendable {
    /// Whether this handler runs `action`.
    func handles(_ action: RenderedAction) -> Bool
    /// Runs the action; throws when it failed (the failure is logged and counted).
    func perform(_ action: FiredAction) async throws
    /// A short name for logs and metrics (`publish`, `log`, `command`).
    var name: String { get }
}

extension ActionHandler {
    /// The type's name without `ActionHandler`, lowercased: `PublishActionHandler` → `publish`.
    public var name: String {
        var name = String(describing: type(of: self))
        if name.hasSuffix("ActionHandler") { name.removeLast("ActionHandler".count) }
        return name.lowercased()
    }
}

/// A handler that can start its action synchronously on the thread that decided it (an MQTT publish is
/// only handed to the network thread), so a command leaves without waiting for a task to be scheduled.
public protocol ImmediateActionHandler: ActionHandler {
    /// Starts the action and calls `completion` once with its outcome, from any thread (a publish: when the
    /// broker acknowledged it). Throws when the action could not even start.
    func start(_ action: FiredAction, completion: @escaping @Sendable (Result<Void, any Error>) -> Void) throws
}
