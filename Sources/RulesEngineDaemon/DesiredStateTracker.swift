import Rules
import Synchronization

/// `DesiredState` shared by the engine's threads (network, clock).
public final class DesiredStateTracker: Sendable {
    private let state: Mutex<DesiredState>

    public init(retryIntervalMilliseconds: Int64 = 5_000) {
        state = Mutex(DesiredState(retryIntervalMilliseconds: retryIntervalMilliseconds))
    }

    /// The `…/state` filters to subscribe to: one per publish action topic ending in `/set`.
    public static func stateFilters(for ruleSet: RuleSet) -> [String] {
        DesiredState.stateFilters(for: ruleSet)
    }

    /// Remembers what a publish action asks for, when its payload has a `state`.
    public func record(_ action: FiredAction, at time: Int64) {
        state.withLock { $0.record(action, at: time) }
    }

    /// Compares an actuator's reported state with what is wanted; returns the command to send again, if any.
    public func observe(stateTopic: String, payload: [UInt8], at time: Int64) -> FiredAction? {
        state.withLock { $0.observe(stateTopic: stateTopic, payload: payload, at: time) }
    }

    /// Commands to send again now.
    public func dueResends(at time: Int64) -> [FiredAction] {
        state.withLock { $0.dueResends(at: time) }
    }
}
