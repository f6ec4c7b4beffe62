import FileFormats

/// Runs rules over recorded readings in event time, deterministically.
public enum Replay {
    /// The result of a replay: actions in order, plus what could not be used.
    public struct Outcome: Sendable {
        public var actions: [FiredAction] = []
        public var transitions: [TransitionRecord] = []
        public var unusable: [String: Int] = [:]
        /// Instances that started or stopped flapping (`flapping:`).
        public var flapping: [EvaluationEvent] = []
        /// Instances held back by `max_transitions`.
        public var limited: [EvaluationEvent] = []
        /// Transitions held back by `min_off`, `min_on`, `cooldown` or `max_transitions`, when the hold started.
        public var held: [EvaluationEvent] = []
        /// Readings a sensor's `seq` shows were never received, and duplicates dropped.
        public var missing: Int64 = 0
        public var duplicates = 0
        /// Instances with a timer (`for`, `stale`, a deferred transition) still pending at the end, and the
        /// earliest one's due time: what a longer run of the clock (`--end`) would fire.
        public var pendingTimers = 0
        public var nextPendingTimer: Int64?
        /// Publishes not fed back because a chain of rules went on for more than `Replay.chainStepLimit` steps
        /// from one reading (a loop).
        public var chainStepsCut = 0
    }

    /// The most publishes fed back into the rules from one reading or clock event (a chain longer than this is
    /// a loop).
    public static let chainStepLimit = 1000

    /// Evaluates `readings` in order, then advances the clock to `end` (default: the last reading's time). A
    /// `publish` that a rule reads is evaluated as a reading at its own time, as the broker delivers it live.
    public static func run(_ ruleSet: RuleSet, readings: [Reading], end: Int64? = nil) -> Outcome {
        var evaluator = Evaluator(ruleSet: ruleSet)
        var events: [EvaluationEvent] = []
        var cut = 0
        // Timers one due time at a time, so that what they publish is read before anything later.
        func advance(before time: Int64, including: Bool) {
            while let due = evaluator.nextDeadline, including ? due <= time : due < time {
                let start = events.count
                evaluator.advance(to: due, into: &events)
                cut += feedBack(from: start, into: &evaluator, events: &events, ruleSet: ruleSet)
            }
        }
        for reading in readings {
            advance(before: reading.timestamp, including: false)
            let start = events.count
            evaluator.process(reading, into: &events)
            cut += feedBack(from: start, into: &evaluator, events: &events, ruleSet: ruleSet)
        }
        if let last = end ?? readings.last?.timestamp {
            advance(before: last, including: true)
            evaluator.advance(to: last, into: &events)
        }
        var outcome = Outcome()
        outcome.chainStepsCut = cut
        outcome.pendingTimers = evaluator.pendingTimerCount
        outcome.nextPendingTimer = evaluator.nextDeadline
        for event in events {
            switch event {
            case .action(let action): outcome.actions.append(action)
            case .transition(let record): outcome.transitions.append(record)
            case .unusable(_, _, let problem, _): outcome.unusable[problem.code, default: 0] += 1
            case .flapping: outcome.flapping.append(event)
            case .transitionsLimited: outcome.limited.append(event)
            case .transitionHeld: outcome.held.append(event)
            case .windowRestarted: break
            case .sequenceGap(_, let missing, _): outcome.missing += missing
            case .duplicate: outcome.duplicates += 1
            }
        }
        return outcome
    }

    /// Evaluates the `publish` actions among `events[start...]` that a rule reads, in order, and those that they
    /// cause in turn; returns how many were not evaluated because the chain passed `chainStepLimit`.
    private static func feedBack(
        from start: Int,
        into evaluator: inout Evaluator,
        events: inout [EvaluationEvent],
        ruleSet: RuleSet
    ) -> Int {
        var index = start
        var steps = 0
        var cut = 0
        while index < events.count {
            defer { index += 1 }
            guard case .action(let fired) = events[index], case .publish(let topic, let payload, _, _) = fired.action,
                ruleSet.reads(topic: topic)
            else { continue }
            guard steps < chainStepLimit else {
                cut += 1
                continue
            }
            steps += 1
            let reading = Reading(
                topic: topic,
                payload: RenderedAction.payloadBytes(payload),
                timestamp: fired.timestamp
            )
            evaluator.process(reading, into: &events)
        }
        return cut
    }

    /// One JSON line per action, as the contract specifies:
    /// `{"ts": <ms>, "rule": "<id>", "transition": "fire"|"clear", "topic": "...", "payload": {...}}`.
    /// `log` and `command` actions carry `"log"` or `"command"` instead of topic and payload; `webhook` actions
    /// `"webhook"` (the URL) and `"body"`.
    public static func jsonLine(_ action: FiredAction) -> String {
        var pairs: [(key: String, value: JSONValue)] = [
            ("ts", .number(Double(action.timestamp))),
            ("rule", .string(action.ruleID)),
            ("transition", .string(action.transition.rawValue)),
        ]
        switch action.action {
        case .publish(let topic, let payload, _, _):
            pairs += [("topic", .string(topic)), ("payload", payload)]
        case .log(let message):
            pairs.append(("log", .string(message)))
        case .command(let arguments, _):
            pairs.append(("command", .array(arguments.map(JSONValue.string))))
        case .webhook(let url, let body, _):
            pairs += [("webhook", .string(url)), ("body", body)]
        }
        return JSONValue.object(pairs).jsonText
    }
}

/// Compares the actions two rule sets take on the same readings.
public enum ActionDiff {
    /// One difference.
    public enum Change: Hashable, Sendable {
        case added(FiredAction)
        case removed(FiredAction)
        case moved(from: FiredAction, to: FiredAction)
    }

    /// The differences between `old` and `new`. Actions are paired by rule, transition, labels and
    /// rendered action without the time-dependent payload keys (`ts`, `reason`, `value`); a pair at
    /// different times is a move.
    public static func compare(old: [FiredAction], new: [FiredAction]) -> [Change] {
        var remaining: [String: [FiredAction]] = [:]
        for action in new { remaining[key(action), default: []].append(action) }
        var changes: [Change] = []
        var unmatchedOld: [FiredAction] = []
        for action in old {
            let actionKey = key(action)
            if var candidates = remaining[actionKey], !candidates.isEmpty {
                let partner = candidates.removeFirst()
                remaining[actionKey] = candidates
                if partner.timestamp != action.timestamp { changes.append(.moved(from: action, to: partner)) }
            } else {
                unmatchedOld.append(action)
            }
        }
        changes += unmatchedOld.map(Change.removed)
        let added = new.filter { action in remaining[key(action)]?.contains(action) ?? false }
        changes += added.map(Change.added)
        return changes.sorted { time(of: $0) < time(of: $1) }
    }

    /// A readable line per change: `- …` removed, `+ …` added, `~ …` moved.
    public static func describe(_ change: Change) -> String {
        switch change {
        case .added(let action): "+ \(Replay.jsonLine(action))"
        case .removed(let action): "- \(Replay.jsonLine(action))"
        case .moved(let from, let to):
            "~ \(from.ruleID) \(from.transition.rawValue) \(from.labels.map(\.description).joined(separator: ",")) "
                + "moved from ts \(from.timestamp) to ts \(to.timestamp) (\(to.timestamp - from.timestamp > 0 ? "+" : "")\(to.timestamp - from.timestamp) ms)"
        }
    }

    private static func time(of change: Change) -> Int64 {
        switch change {
        case .added(let action), .removed(let action): action.timestamp
        case .moved(let from, let to): min(from.timestamp, to.timestamp)
        }
    }

    private static func key(_ action: FiredAction) -> String {
        var action = action
        func withoutTimeAndReason(_ payload: JSONValue) -> JSONValue {
            guard case .object(let pairs) = payload else { return payload }
            return .object(pairs.filter { !["ts", "reason", "value"].contains($0.key) })
        }
        switch action.action {
        case .publish(let topic, let payload, let qos, let retain):
            action.action = .publish(topic: topic, payload: withoutTimeAndReason(payload), qos: qos, retain: retain)
        case .webhook(let url, let body, let timeout):
            action.action = .webhook(url: url, body: withoutTimeAndReason(body), timeoutMilliseconds: timeout)
        case .log, .command: break
        }
        return "\(action.ruleID)|\(action.transition)|\(action.labels)|\(action.action)"
    }
}
