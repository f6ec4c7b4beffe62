import FileFormats
import Rules
import Synchronization

/// Commands are desired state: remembers the last `state` each rule sent to each actuator's `…/set`
/// topic and, when the actuator's retained `…/state` reports something else, sends it again, at most
/// once per `retryIntervalMilliseconds` per actuator. A command lost anywhere heals itself.
public final class DesiredStateTracker: Sendable {
    struct Desired {
        var state: String
        var action: FiredAction
        var lastSentAt: Int64
        /// What the actuator last reported, if anything.
        var reported: String?
        var resends = 0
    }

    struct State {
        var desired: [String: Desired] = [:]
        /// Command topics whose actuator reports something other than what is wanted.
        var mismatched: Set<String> = []
    }

    let retryIntervalMilliseconds: Int64
    private let state = Mutex(State())

    public init(retryIntervalMilliseconds: Int64 = 5_000) {
        self.retryIntervalMilliseconds = retryIntervalMilliseconds
    }

    /// The `…/state` filters to subscribe to: one per publish action topic ending in `/set`.
    public static func stateFilters(for ruleSet: RuleSet) -> [String] {
        var filters: [String] = []
        for rule in ruleSet.rules {
            for action in rule.onFire + rule.onClear {
                guard case .publish(let topic, _, _, _) = action.handler else { continue }
                let marker = "\u{1}"
                var levels = topic.render { _ in marker }.split(separator: "/", omittingEmptySubsequences: false)
                    .map { $0.contains(marker) ? "+" : String($0) }
                guard levels.last == "set" else { continue }
                levels[levels.count - 1] = "state"
                let filter = levels.joined(separator: "/")
                if !filters.contains(filter) { filters.append(filter) }
            }
        }
        return filters
    }

    /// Remembers what a publish action asks for, when its payload has a `state`.
    public func record(_ action: FiredAction, at time: Int64) {
        guard case .publish(let topic, let payload, _, _) = action.action, topic.hasSuffix("/set"),
            case .string(let state)? = payload["state"]
        else { return }
        self.state.withLock { tracked in
            let reported = tracked.desired[topic]?.reported
            tracked.desired[topic] = Desired(state: state, action: action, lastSentAt: time, reported: reported)
            if let reported, !ActuatorState.same(reported, state) {
                tracked.mismatched.insert(topic)
            } else {
                tracked.mismatched.remove(topic)
            }
        }
    }

    /// Compares an actuator's reported state with what is wanted; returns the command to send again, if any.
    public func observe(stateTopic: String, payload: [UInt8], at time: Int64) -> FiredAction? {
        guard stateTopic.hasSuffix("/state") else { return nil }
        let commandTopic = String(stateTopic.dropLast("state".count)) + "set"
        let reported = ActuatorState.name(in: payload)
        guard let reported else { return nil }
        return state.withLock { tracked -> FiredAction? in
            guard var wanted = tracked.desired[commandTopic] else { return nil }
            wanted.reported = reported
            tracked.desired[commandTopic] = wanted
            guard !ActuatorState.same(wanted.state, reported) else {
                tracked.mismatched.remove(commandTopic)
                return nil
            }
            tracked.mismatched.insert(commandTopic)
            return Self.resendIfDue(commandTopic, in: &tracked, at: time, interval: retryIntervalMilliseconds)
        }
    }

    /// Commands to send again now: actuators still reporting another state once the retry interval passed.
    public func dueResends(at time: Int64) -> [FiredAction] {
        state.withLock { tracked in
            tracked.mismatched.compactMap { topic in
                Self.resendIfDue(topic, in: &tracked, at: time, interval: retryIntervalMilliseconds)
            }
        }
    }

    private static func resendIfDue(
        _ commandTopic: String,
        in tracked: inout State,
        at time: Int64,
        interval: Int64
    )
        -> FiredAction?
    {
        guard var wanted = tracked.desired[commandTopic], let reported = wanted.reported,
            !ActuatorState.same(reported, wanted.state),
            time - wanted.lastSentAt >= interval
        else { return nil }
        wanted.lastSentAt = time
        wanted.resends += 1
        tracked.desired[commandTopic] = wanted
        var again = wanted.action
        again.timestamp = time
        again.reason = "actuator reports '\(reported)', rule wants '\(wanted.state)' (re-sent)"
        if case .publish(let topic, let payload, let qos, let retain) = again.action {
            let refreshed = payload.setting("reason", to: .string(again.reason)).setting(
                "ts",
                to: .number(Double(time))
            )
            again.action = .publish(topic: topic, payload: refreshed, qos: qos, retain: retain)
        }
        return again
    }
}
