import Rules

/// Told of every transition once it is committed (journal and audit written), in commit order. It may be
/// called under the engine's lock: it must only take note and return (no call back into the engine).
public protocol TransitionObserver: Sendable {
    func observe(_ transition: TransitionRecord)
}
