import FileFormats

/// Commands are desired state: remembers the last `state` each rule sent to each actuator's `…/set`
/// topic and, when the actuator's retained `…/state` reports something else, sends it again, at most
/// once per `retryIntervalMilliseconds` per actuator. A command lost anywhere heals itself. Pure: time
/// is passed in.
public struct DesiredState: Sendable {
    struct Desired {
        var state: String
        var action: FiredAction
        var lastSentAt: Int64
        /// What the actuator last reported, if anything.
        var reported: String?
        var resends = 0
    }

    var desired: [String: Desired] = [:]
    /// Command topics whose actuator reports something other than what is wanted.
    var mismatched: Set<String> = []
    public let retryIntervalMilliseconds: Int64

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
    public mutating func record(_ action: FiredAction, at time: Int64) {
        guard case .publish(let topic, let payload, _, _) = action.action, topic.hasSuffix("/set"),
            case .string(let state)? = payload["state"]
        else { return }
        var reported: String?
        if let index = desired.index(forKey: topic) {
            reported = desired.values[index].reported
            desired.values[index] = Desired(state: state, action: action, lastSentAt: time, reported: reported)
        } else {
            desired[topic] = Desired(state: state, action: action, lastSentAt: time, reported: nil)
        }
        if let reported, !ActuatorState.same(reported, state) {
            mismatched.insert(topic)
        } else if !mismatched.isEmpty {
            mismatched.remove(topic)
        }
    }

    /// Compares an actuator's reported state with what is wanted; returns the command to send again, if any.
    public mutating func observe(stateTopic: String, payload: [UInt8], at time: Int64) -> FiredAction? {
        guard stateTopic.hasSuffix("/state"), let reported = ActuatorState.name(in: payload) else { return nil }
        let commandTopic = String(stateTopic.dropLast("state".count)) + "set"
        guard var wanted = desired[commandTopic] else { return nil }
        wanted.reported = reported
        desired[commandTopic] = wanted
        guard !ActuatorState.same(wanted.state, reported) else {
            mismatched.remove(commandTopic)
            return nil
        }
        mismatched.insert(commandTopic)
        return resendIfDue(commandTopic, at: time)
    }

    /// Commands to send again now: actuators still reporting another state once the retry interval passed.
    public mutating func dueResends(at time: Int64) -> [FiredAction] {
        mismatched.sorted().compactMap { resendIfDue($0, at: time) }
    }

    private mutating func resendIfDue(_ commandTopic: String, at time: Int64) -> FiredAction? {
        guard var wanted = desired[commandTopic], let reported = wanted.reported,
            !ActuatorState.same(reported, wanted.state),
            time - wanted.lastSentAt >= retryIntervalMilliseconds
        else { return nil }
        wanted.lastSentAt = time
        wanted.resends += 1
        desired[commandTopic] = wanted
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
