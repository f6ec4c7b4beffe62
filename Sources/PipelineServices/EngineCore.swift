import Logging
import MQTT
import Rules
import Synchronization

/// The engine's state behind one lock: the evaluator and what it needs per reading. Called on
/// libmosquitto's network thread for every message (so a QoS 1 reading is evaluated before it is
/// acknowledged) and by the clock and reload tasks.
final class EngineCore: Sendable {
    struct Locked {
        var evaluator: Evaluator
        var statePatterns: TopicPatternSet
    }

    private let locked: Mutex<Locked>
    private let messagesHandled = Atomic<Int>(0)
    let dispatcher: ActionDispatcher
    let desiredState: DesiredStateTracker
    let problems: ProblemCounter
    let store: InstanceStateStore?
    let audit: AuditTrail?
    let logger: Logger
    let metrics: EngineMetrics
    let liveFeed: LiveFeed?
    /// Called with each transition as a JSON object, to publish on the engine's transitions topic.
    let announce: @Sendable (JSONValue) -> Void

    init(
        ruleSet: RuleSet,
        dispatcher: ActionDispatcher,
        desiredState: DesiredStateTracker,
        store: InstanceStateStore?,
        audit: AuditTrail?,
        logger: Logger,
        metrics: EngineMetrics = .discarded,
        liveFeed: LiveFeed? = nil,
        announce: @escaping @Sendable (JSONValue) -> Void = { _ in }
    ) {
        var evaluator = Evaluator(ruleSet: ruleSet)
        evaluator.tracksChanges = store != nil
        self.locked = Mutex(Locked(evaluator: evaluator, statePatterns: EngineCore.patterns(for: ruleSet)))
        self.dispatcher = dispatcher
        self.desiredState = desiredState
        self.problems = ProblemCounter(logger: logger)
        self.store = store
        self.audit = audit
        self.logger = logger
        self.metrics = metrics
        self.liveFeed = liveFeed
        self.announce = announce
    }

    var ruleSet: RuleSet { locked.withLock { $0.evaluator.ruleSet } }

    /// The MQTT filters the engine needs: the rules' topics and the actuators' state topics.
    var filters: [String] {
        let ruleSet = self.ruleSet
        var result = ruleSet.filters
        for filter in DesiredStateTracker.stateFilters(for: ruleSet) where !result.contains(filter) {
            result.append(filter)
        }
        return result
    }

    var nextDeadline: Int64? { locked.withLock { $0.evaluator.nextDeadline } }

    /// Messages evaluated since the start (readings and actuator states).
    var handledCount: Int { messagesHandled.load(ordering: .relaxed) }

    /// Every rule instance (of one rule, when given).
    func instanceReports(ruleID: String?) -> [InstanceReport] {
        locked.withLock { $0.evaluator.instanceReports(ruleID: ruleID) }
    }

    /// Rule instances alive.
    var instanceCount: Int { locked.withLock { $0.evaluator.instanceCount } }

    /// Restores saved instances and the last `seq` per topic; returns how many instances.
    func restore(_ state: InstanceStateStore.SavedState, now: Int64) -> Int {
        locked.withLock {
            $0.evaluator.restoreSequences(state.sequences)
            return $0.evaluator.restore(state.instances, now: now)
        }
    }

    /// Evaluates one message (a reading, an actuator's state, or both).
    func handle(_ message: MQTTMessage, at time: Int64) {
        messagesHandled.add(1, ordering: .relaxed)
        metrics.readingsReceived.increment()
        let start = EngineMetrics.now()
        var events: [EvaluationEvent] = []
        let (isState, evaluated) = locked.withLock { locked -> (Bool, Bool) in
            let isState = locked.statePatterns.matches(message.topic)
            let before = locked.evaluator.evaluatedReadingCount
            locked.evaluator.process(
                Reading(topic: message.topic, payload: message.payload, timestamp: time),
                into: &events
            )
            commit(&locked, events: events, topic: message.topic)
            return (isState, locked.evaluator.evaluatedReadingCount != before)
        }
        if evaluated {
            metrics.readingsEvaluated.increment()
            metrics.evaluationDuration.recordNanoseconds(Int64(EngineMetrics.now() &- start))
        }
        liveFeed?.observe(topic: message.topic, payload: message.payload, isState: isState, at: time)
        if isState, let resend = desiredState.observe(stateTopic: message.topic, payload: message.payload, at: time) {
            logger.notice(
                "re-sending a command the actuator did not apply",
                metadata: ["rule": "\(resend.ruleID)", "reason": "\(resend.reason)"]
            )
            send(resend)
        }
        deliver(events, at: time)
    }

    /// Runs every timer due by `time`.
    func advance(to time: Int64) {
        var events: [EvaluationEvent] = []
        locked.withLock { locked in
            locked.evaluator.advance(to: time, into: &events)
            commit(&locked, events: events, topic: nil)
        }
        deliver(events, at: time)
    }

    /// Swaps in a validated rule set, keeping the state of unchanged rules; returns the filters before and after.
    func replaceRules(with ruleSet: RuleSet) -> (old: [String], new: [String]) {
        let old = filters
        locked.withLock { locked in
            commit(&locked, events: [], topic: nil)
            locked.evaluator.replaceRules(with: ruleSet)
            locked.statePatterns = EngineCore.patterns(for: ruleSet)
        }
        return (old, filters)
    }

    /// Folds the state journal into snapshots when it grew long (under the lock: no record is appended
    /// between taking the snapshot and emptying the journal).
    func compactStateIfNeeded() {
        guard let store, store.needsCompaction else { return }
        locked.withLock { locked in
            do {
                try store.compact(
                    instances: locked.evaluator.snapshotAll(),
                    sequences: locked.evaluator.lastSequences
                )
            } catch {
                logger.error("cannot write the state snapshot", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Queues a command (a desired-state re-send) for its handler after writing it down like any decision,
    /// so its audit line is ordered with the others and the journal's last record names it.
    func send(_ action: FiredAction) {
        locked.withLock { commit(&$0, events: [.action(action)], topic: nil) }
        dispatcher.enqueue(action)
    }

    /// Writes down what an evaluation decided, still under the lock (so records land in evaluation order)
    /// and before the reading is acknowledged: first the journal record — changed instances, the reading's
    /// `seq`, the audit lines — as one write, then the audit lines. Whatever a `kill -9` interrupts, the
    /// next start finds the reading either not evaluated at all (the broker redelivers it) or evaluated
    /// with its audit lines known.
    private func commit(_ locked: inout Locked, events: [EvaluationEvent], topic: String?) {
        guard store != nil || audit != nil else { return }
        var auditLines: [String] = []
        if audit != nil {
            for event in events {
                switch event {
                case .transition(let record):
                    auditLines.append(AuditTrail.line(for: record, in: locked.evaluator.ruleSet))
                case .action(let action):
                    auditLines.append(AuditTrail.line(for: action, in: locked.evaluator.ruleSet))
                default: break
                }
            }
        }
        if let store {
            var record = InstanceStateStore.Record(
                instances: locked.evaluator.takeChangedInstances(),
                auditLines: auditLines
            )
            if let topic, let sequence = locked.evaluator.lastAcceptedSequence { record.sequence = (topic, sequence) }
            do {
                try store.append(record)
            } catch {
                logger.error("cannot write the state journal", metadata: ["error": "\(error)"])
            }
        }
        audit?.write(lines: auditLines)
    }

    private func deliver(_ events: [EvaluationEvent], at time: Int64) {
        for event in events {
            switch event {
            case .transition(let record):
                metrics.transition(rule: record.ruleID, kind: record.transition.rawValue)
                announce(
                    .object([
                        ("ts", .number(Double(record.timestamp))), ("rule", .string(record.ruleID)),
                        ("transition", .string(record.transition.rawValue)),
                        ("labels", .object(record.labels.map { ($0.name, .string($0.value)) })),
                        ("value", record.value ?? .null), ("reason", .string(record.reason)),
                    ])
                )
                logger.notice(
                    "rule \(record.transition == .fire ? "fired" : "cleared")",
                    metadata: [
                        "rule": "\(record.ruleID)",
                        "labels": "\(record.labels.map(\.description).joined(separator: ","))",
                        "value": "\(record.value?.jsonText ?? "none")",
                        "reason": "\(record.reason)",
                        "severity": "\(record.severity.rawValue)",
                        "ts": "\(record.timestamp)",
                    ]
                )
            case .action(let action):
                liveFeed?.command(action)
                desiredState.record(action, at: time)
                dispatcher.enqueue(action)  // its audit line was written by `commit`
            case .unusable(let ruleID, let topic, let problem, _):
                metrics.rejected(problem.code)
                problems.record(
                    problem.code,
                    at: time,
                    detail: ["rule": "\(ruleID)", "topic": "\(topic)", "problem": "\(problem)"]
                )
            case .sequenceGap(let topic, let missing, _):
                metrics.readingsLost.increment(by: Int64(clamping: missing))
                problems.record(
                    "sequence_gap",
                    at: time,
                    message: "readings lost before the engine (gap in seq)",
                    amount: Int(clamping: missing),
                    detail: ["topic": "\(topic)", "missing": "\(missing)"]
                )
            case .duplicate(let topic, let sequence, _):
                metrics.duplicates.increment()
                problems.record(
                    "duplicate",
                    at: time,
                    message: "duplicate reading dropped",
                    detail: ["topic": "\(topic)", "seq": "\(sequence)"]
                )
            case .flapping(let ruleID, let labels, _, let until):
                logger.warning(
                    "rule instance is flapping: holding its state",
                    metadata: [
                        "rule": "\(ruleID)", "labels": "\(labels.map(\.description).joined(separator: ","))",
                        "until": "\(until)",
                    ]
                )
            }
        }
    }

    private static func patterns(for ruleSet: RuleSet) -> TopicPatternSet {
        TopicPatternSet(DesiredStateTracker.stateFilters(for: ruleSet).compactMap { try? TopicPattern(parsing: $0) })
    }
}
