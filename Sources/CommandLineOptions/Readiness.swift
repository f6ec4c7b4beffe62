import Synchronization

/// Runs `action` once, when every part arrived (the engine subscribed, the HTTP server listening).
public final class Readiness: Sendable {
    private let remaining: Atomic<Int>
    private let action: @Sendable () -> Void

    public init(parts: Int, action: @escaping @Sendable () -> Void) {
        remaining = Atomic(parts)
        self.action = action
    }

    /// One part is ready.
    public func arrive() {
        if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { action() }
    }
}
