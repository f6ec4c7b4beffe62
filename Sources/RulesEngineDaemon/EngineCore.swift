import CoreMetrics
import FileFormats
import Logging
import MQTT
import Rules
import Synchronization

/// The engine's state behind one lock: the evaluator and what it needs per reading. Called on
/// libmosquitto's network thread for every message (so a QoS 1 reading is evaluated before it is
/// acknowledged) and by the clock and reload tasks.
package final class EngineCore: Sendable {
    /// Whether readings are taken (docs/engine.md, "SIGTERM").
    enum Intake: Sendable, Equatable {
        /// Every reading is evaluated.
        case open
        /// Shutting down: no reading is evaluated and no timer fires. A reading that arrives is refused: its
        /// handler shuts the connection's sending side before it returns, so neither it nor any later
        /// reading is acknowledged, and the broker redelivers them to the next start.
        case closed
    }

    struct Locked {
        var evaluator: Evaluator
        var statePatterns: TopicPatternSet
        var intake = Intake.open
        /// Readings refused after the intake closed (left for the broker to redeliver).
        var refused = 0
        /// Partitioned mode: the stream sequence of the last message evaluated.
        var position: UInt64 = 0
        /// Partitioned mode: the clock of the snapshot restored (the evaluator's own starts at the next message).
        var restoredTime: Int64 = .min
    }

    /// Decisions waiting to be delivered, in commit order. Appended under the evaluator lock; delivered by
    /// one thread at a time (whoever finds nobody delivering), outside every lock but this one's brief holds.
    struct Outbox {
        struct Batch {
            var events: [EvaluationEvent]
            /// Desired-state re-sends, delivered after the events.
            var resends: [FiredAction]
            var time: Int64
        }
        var batches: [Batch] = []
        var delivering = false
        var isIdle: Bool { batches.isEmpty && !delivering }
    }

    private let locked: Mutex<Locked>
    private let outbox = Mutex(Outbox())
    private let messagesHandled = Atomic<Int>(0)
    let dispatcher: ActionDispatcher
    let desiredState: DesiredStateTracker
    let problems: ProblemCounter
    let store: InstanceStateStore?
    let audit: AuditTrail?
    let logger: Logger
    let metrics: EngineMetrics
    let liveFeed: LiveFeed?
    let observers: [any TransitionObserver]
    /// Called with each transition, to publish on the engine's transitions topic (nil: not announced).
    let announce: (@Sendable (TransitionRecord) -> Void)?
    /// Shuts the connection's sending side at once, so that no acknowledgement leaves any more.
    let stopAcknowledging: @Sendable () -> Void

    package init(
        ruleSet: RuleSet,
        dispatcher: ActionDispatcher,
        desiredState: DesiredStateTracker,
        store: InstanceStateStore?,
        audit: AuditTrail?,
        logger: Logger,
        metrics: EngineMetrics = .discarded,
        liveFeed: LiveFeed? = nil,
        observers: [any TransitionObserver] = [],
        announce: (@Sendable (TransitionRecord) -> Void)? = nil,
        stopAcknowledging: @escaping @Sendable () -> Void = {}
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
        self.observers = observers
        self.announce = announce
        self.stopAcknowledging = stopAcknowledging
    }

    package var ruleSet: RuleSet { locked.withLock { $0.evaluator.ruleSet } }

    /// The MQTT filters the engine needs: the rules' topics and the actuators' state topics.
    var neededFilters: [String] {
        let ruleSet = self.ruleSet
        var result = ruleSet.filters
        for filter in DesiredStateTracker.stateFilters(for: ruleSet) where !result.contains(filter) {
            result.append(filter)
        }
        return result
    }

    /// The filters the engine subscribes to: `neededFilters` with overlapping ones merged, so that the broker
    /// delivers each message once and each reading is evaluated once.
    var filters: [String] { TopicFilterCover(covering: neededFilters).filters }

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

    /// Evaluates one message (a reading, an actuator's state, or both). On libmosquitto's network thread,
    /// before the message is acknowledged.
    func handle(_ message: MQTTMessage, at time: Int64) {
        messagesHandled.add(1, ordering: .relaxed)
        metrics.readingsReceived.increment()
        let start = EngineMetrics.now()
        var events: [EvaluationEvent] = []
        let outcome = locked.withLock { locked -> (isState: Bool, evaluated: Bool)? in
            guard locked.intake == .open else {
                locked.refused += 1
                return nil
            }
            let isState = locked.statePatterns.matches(message.topic)
            let before = locked.evaluator.evaluatedReadingCount
            locked.evaluator.process(
                Reading(topic: message.topic, payload: message.payload, timestamp: time),
                into: &events
            )
            var resends: [FiredAction] = []
            if isState, let resend = desiredState.observe(stateTopic: message.topic, payload: message.payload, at: time)
            {
                resends.append(resend)
            }
            commit(&locked, events: events, resends: resends, topic: message.topic, at: time)
            return (isState, locked.evaluator.evaluatedReadingCount != before)
        }
        guard let outcome else {
            stopAcknowledging()  // before this handler returns: no acknowledgement of this reading leaves
            return
        }
        if outcome.evaluated {
            metrics.readingsEvaluated.increment()
            metrics.evaluationDuration.recordNanoseconds(Int64(EngineMetrics.now() &- start))
        }
        liveFeed?.observe(topic: message.topic, payload: message.payload, isState: outcome.isState, at: time)
        deliverOutbox()
    }

    /// Runs every timer due by `time` (none once shutting down: a pending `for` resumes after the restart).
    func advance(to time: Int64) {
        var events: [EvaluationEvent] = []
        locked.withLock { locked in
            guard locked.intake == .open else { return }
            locked.evaluator.advance(to: time, into: &events)
            commit(&locked, events: events, topic: nil, at: time)
        }
        deliverOutbox()
    }

    // MARK: Shutdown

    /// SIGTERM: from now on no reading is evaluated (each one that arrives is refused, see `Intake.closed`),
    /// no timer fires and no command is re-sent.
    package func closeIntake() {
        locked.withLock { $0.intake = .closed }
    }

    /// Readings refused since the intake closed.
    var refusedCount: Int { locked.withLock { $0.refused } }

    /// Whether every decision made so far has been handed to its handler.
    var outboxIsIdle: Bool { outbox.withLock(\.isIdle) }

    /// Swaps in a validated rule set, keeping the state of unchanged rules; returns the filters before and after.
    /// The topic filters before and after, what changed rule by rule, and the instances (all, firing) that the
    /// rules which were removed or changed had.
    func replaceRules(
        with ruleSet: RuleSet
    ) -> (old: [String], new: [String], changes: RuleSetChanges, dropped: [String: (all: Int, firing: Int)]) {
        let old = filters
        let (changes, dropped) = locked.withLock { locked in
            let changes = RuleSetChanges(from: locked.evaluator.ruleSet, to: ruleSet)
            let dropped = locked.evaluator.instanceCounts().filter { changes.dropsInstances(of: $0.key) }
            commit(&locked, events: [], topic: nil, at: 0)
            let events = locked.evaluator.replaceRules(with: ruleSet)
            deliver(events, at: locked.evaluator.now)
            locked.statePatterns = EngineCore.patterns(for: ruleSet)
            return (changes, dropped)
        }
        return (old, filters, changes, dropped)
    }

    /// Folds the state journal into snapshots when it grew long. Under the lock only the journal is
    /// rotated and the state taken (so no record falls between them); encoding, writing and fsync happen
    /// after, so a compaction does not stall libmosquitto's thread.
    func compactStateIfNeeded() {
        guard let store, store.needsCompaction else { return }
        do {
            let (through, instances, sequences) = try locked.withLock { locked in
                (try store.rotateJournal(), locked.evaluator.snapshotAll(), locked.evaluator.lastSequences)
            }
            try store.writeSnapshots(instances: instances, sequences: sequences, through: through)
        } catch {
            logger.error("cannot write the state snapshot", metadata: ["error": "\(error)"])
        }
    }

    /// Sends again the commands whose actuators still report another state (none while shutting down),
    /// written down like any decision so that their audit lines are ordered with the others.
    func sendDueResends(at time: Int64) {
        locked.withLock { locked in
            guard locked.intake == .open else { return }
            let resends = desiredState.dueResends(at: time)
            guard !resends.isEmpty else { return }
            commit(&locked, events: [], resends: resends, topic: nil, at: time)
        }
        deliverOutbox()
    }

    /// Writes down what an evaluation decided, still under the lock (so records land in evaluation order)
    /// and before the reading is acknowledged: first the journal record — changed instances, the reading's
    /// `seq`, the audit lines — as one write, then the audit lines. Whatever a `kill -9` interrupts, the
    /// next start finds the reading either not evaluated at all (the broker redelivers it) or evaluated
    /// with its audit lines known.
    /// Ends by appending the events to the outbox, so they are delivered in the order they were committed.
    private func commit(
        _ locked: inout Locked,
        events: [EvaluationEvent],
        resends: [FiredAction] = [],
        topic: String?,
        at time: Int64
    ) {
        defer {
            if !events.isEmpty || !resends.isEmpty {
                outbox.withLock { $0.batches.append(Outbox.Batch(events: events, resends: resends, time: time)) }
            }
        }
        guard store != nil || audit != nil else { return }
        var auditLines: [String] = []
        if audit != nil {
            auditLines = AuditLine.lines(for: events, in: locked.evaluator.ruleSet)
            for action in resends { auditLines.append(AuditLine.line(for: action, in: locked.evaluator.ruleSet)) }
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
        do {
            try audit?.write(lines: auditLines)
        } catch {
            metrics.rejected("audit_write_failed")
            problems.record(
                "audit_write_failed",
                at: time,
                message: "cannot write the audit trail",
                detail: ["error": "\(error)", "lines": "\(auditLines.count)"]
            )
        }
    }

    /// Delivers what the outbox holds, unless another thread is at it (it delivers ours too, after its own).
    private func deliverOutbox() {
        while true {
            let batches = outbox.withLock { outbox -> [Outbox.Batch]? in
                guard !outbox.delivering, !outbox.batches.isEmpty else { return nil }
                outbox.delivering = true
                defer { outbox.batches.removeAll(keepingCapacity: true) }
                return outbox.batches
            }
            guard let batches else { return }
            for batch in batches {
                deliver(batch.events, at: batch.time)
                for action in batch.resends {
                    logger.notice(
                        "re-sending a command the actuator did not apply",
                        metadata: ["rule": "\(action.ruleID)", "reason": "\(action.reason)"]
                    )
                    dispatcher.enqueue(action)
                }
            }
            outbox.withLock { $0.delivering = false }
        }
    }

    private func deliver(_ events: [EvaluationEvent], at time: Int64) {
        for event in events {
            switch event {
            case .transition(let record):
                metrics.transitions.increment(rule: record.ruleID, transition: record.transition)
                for observer in observers { observer.observe(record) }
                liveFeed?.transition(record)
                announce?(record)
                logger.notice(
                    "rule \(record.transition == .fire ? "fired" : "cleared")",
                    metadata: [
                        "rule": .string(record.ruleID),
                        "labels": .string(record.labels.map(\.description).joined(separator: ",")),
                        "value": .string(record.value?.jsonText ?? "none"),
                        "reason": .string(record.reason),
                        "severity": .string(record.severity.rawValue),
                        "ts": .string(String(record.timestamp)),
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
            case .transitionsLimited(let ruleID, _, _, _):
                metrics.limited(rule: ruleID)
            case .transitionHeld(let ruleID, let labels, _, let transition, let heldBy, let until):
                metrics.held(rule: ruleID, by: heldBy)
                // A wear limit holding an actuator against its rule is worth a warning; a cooldown is routine.
                logger.log(
                    level: heldBy == "cooldown" ? .info : .warning,
                    "rule instance held: its \(transition.rawValue) waits for \(heldBy)",
                    metadata: [
                        "rule": "\(ruleID)", "labels": "\(labels.map(\.description).joined(separator: ","))",
                        "held_by": "\(heldBy)", "until": "\(Timestamp.rfc3339(until))",
                    ]
                )
            case .flapping(let ruleID, let labels, let timestamp, let isFlapping, let percent):
                metrics.flapping(rule: ruleID, started: isFlapping)
                logger.warning(
                    isFlapping ? "rule instance is flapping: held as the rule says" : "rule instance stopped flapping",
                    metadata: [
                        "rule": "\(ruleID)", "labels": "\(labels.map(\.description).joined(separator: ","))",
                        "percent": "\(JSONValue.format(percent.rounded()))", "ts": "\(timestamp)",
                    ]
                )
            case .windowRestarted(let ruleID, let window):
                logger.notice(
                    "window length changed: the window starts over",
                    metadata: ["rule": "\(ruleID)", "window": "\(window)"]
                )
            }
        }
    }

    // MARK: Partitioned mode (docs/scale-out.md)

    /// Evaluates one reading of a partition at its stream time and returns what it decided, delivering nothing
    /// (the partitioned mode records the decisions in the stream first). `position` is the reading's stream
    /// sequence, kept with the state it produced. Nil once the intake is closed (the partition was lost).
    package func decide(topic: String, payload: [UInt8], at time: Int64, position: UInt64) -> [EvaluationEvent]? {
        messagesHandled.add(1, ordering: .relaxed)
        metrics.readingsReceived.increment()
        var events: [EvaluationEvent] = []
        let open = locked.withLock { locked -> Bool in
            guard locked.intake == .open else { return false }
            locked.evaluator.process(Reading(topic: topic, payload: payload, timestamp: time), into: &events)
            locked.position = position
            return true
        }
        return open ? events : nil
    }

    /// Runs the timers due by `time` (a partition's stream time) and returns what they decided, delivering
    /// nothing; nil once the intake is closed.
    package func decideTimers(at time: Int64, position: UInt64) -> [EvaluationEvent]? {
        var events: [EvaluationEvent] = []
        let open = locked.withLock { locked -> Bool in
            guard locked.intake == .open else { return false }
            locked.evaluator.advance(to: time, into: &events)
            locked.position = position
            return true
        }
        return open ? events : nil
    }

    /// Delivers decisions the partitioned mode has recorded: logged, counted, written to the audit file and
    /// handed to the actions' handlers. With `emitting` false (decisions the partition's earlier owner had
    /// already recorded), only the desired states of their commands are noted, so re-sends keep working.
    package func deliverRecorded(_ events: [EvaluationEvent], at time: Int64, emitting: Bool) {
        guard emitting else {
            for case .action(let action) in events { desiredState.record(action, at: time) }
            return
        }
        if let audit {
            let lines = AuditLine.lines(for: events, in: ruleSet)
            do {
                try audit.write(lines: lines)
            } catch {
                metrics.rejected("audit_write_failed")
                problems.record(
                    "audit_write_failed",
                    at: time,
                    message: "cannot write the audit trail",
                    detail: ["error": "\(error)", "lines": "\(lines.count)"]
                )
            }
        }
        deliver(events, at: time)
    }

    /// An actuator's reported state: re-sends its command when it differs from what this partition's rules
    /// asked for (at most once per re-send interval). Nothing once the intake is closed.
    package func observeActuatorState(topic: String, payload: [UInt8], at time: Int64) {
        let resend = locked.withLock { locked -> FiredAction? in
            guard locked.intake == .open else { return nil }
            return desiredState.observe(stateTopic: topic, payload: payload, at: time)
        }
        if let resend { dispatcher.enqueue(resend) }
    }

    /// Re-sends due by `time`, handed straight to the dispatcher (the partitioned mode records no re-send).
    package func enqueueDueResends(at time: Int64) {
        let resends = locked.withLock { locked -> [FiredAction] in
            guard locked.intake == .open else { return [] }
            return desiredState.dueResends(at: time)
        }
        for action in resends {
            logger.notice(
                "re-sending a command the actuator did not apply",
                metadata: ["rule": "\(action.ruleID)", "reason": "\(action.reason)"]
            )
            dispatcher.enqueue(action)
        }
    }

    /// The whole state of the evaluator, with the stream position it reflects and its clock.
    package func partitionState() -> (
        instances: [InstanceSnapshot], sequences: [String: Int64], time: Int64, position: UInt64
    ) {
        locked.withLock { locked in
            (
                locked.evaluator.snapshotAll(), locked.evaluator.lastSequences,
                max(locked.evaluator.now, locked.restoredTime), locked.position
            )
        }
    }

    /// Restores a partition's saved state (instances at their saved clock, last `seq` per topic, position).
    package func restorePartition(
        instances: [InstanceSnapshot],
        sequences: [String: Int64],
        time: Int64,
        position: UInt64
    ) {
        locked.withLock { locked in
            locked.evaluator.restoreSequences(sequences)
            _ = locked.evaluator.restore(instances, now: time)
            locked.position = position
            locked.restoredTime = time
        }
    }

    /// The stream sequence of the last message evaluated (partitioned mode).
    package var position: UInt64 { locked.withLock { $0.position } }

    private static func patterns(for ruleSet: RuleSet) -> TopicPatternSet {
        TopicPatternSet(DesiredStateTracker.stateFilters(for: ruleSet).compactMap { try? TopicPattern(parsing: $0) })
    }
}
