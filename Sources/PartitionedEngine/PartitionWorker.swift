import FileFormats
import Logging
import NATS
import PartitionLeases
import PartitionState
import Rules
import RulesEngineDaemon
import ServiceSupport
import Synchronization

/// What every partition's worker shares: the connection, the snapshot bucket, the rules and the action path.
struct PartitionWorkerContext: Sendable {
    var configuration: PartitionedEngineConfiguration
    var connection: NATSConnection
    var snapshots: PartitionSnapshotStore
    var ruleSet: RuleSet
    var dispatcher: ActionDispatcher
    var audit: AuditTrail?
    var resendIntervalMilliseconds: Int64
    var logger: Logger
}

/// One owned partition: takes it over (snapshot, decisions fence, replay), then evaluates it live from the
/// readings stream until it is lost or handed back (docs/scale-out.md, "Takeover").
///
/// Time is the stream's: each message is evaluated at the time the stream stored it, and the owner stamps the
/// partition with a tick every `tickInterval`, so timers fire without readings. Every owner, and every replay,
/// therefore sees the same messages at the same times and decides the same things; the decisions stream
/// says which of them were delivered already.
final class PartitionWorker: Sendable {
    /// Why the worker stops.
    enum Ending: Sendable, Equatable {
        /// The lease was lost or another owner fenced this one: stop emitting at once.
        case lost
        /// The lease is handed back: finish the message at hand and write the last snapshot.
        case released
    }

    private struct State {
        var ending: Ending?
        var core: EngineCore?
        var readings: NATSSubscription<NATSStreamMessage>?
        var finished = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    let partition: Int
    let epoch: UInt64
    private let context: PartitionWorkerContext
    private let logger: Logger
    private let state = Mutex(State())

    init(partition: Int, epoch: UInt64, context: PartitionWorkerContext) {
        self.partition = partition
        self.epoch = epoch
        self.context = context
        var logger = context.logger
        logger[metadataKey: "partition"] = "\(partition)"
        logger[metadataKey: "epoch"] = "\(epoch)"
        self.logger = logger
    }

    /// The partition's evaluator, once taken over.
    var core: EngineCore? { state.withLock { $0.core } }

    private var ending: Ending? { state.withLock { $0.ending } }

    /// Stops the worker: with `.lost`, nothing more is evaluated or emitted from the moment this returns.
    func stop(_ ending: Ending) {
        let (core, readings) = state.withLock { state -> (EngineCore?, NATSSubscription<NATSStreamMessage>?) in
            if state.ending != .lost { state.ending = ending }
            return (state.core, state.readings)
        }
        if ending == .lost { core?.closeIntake() }
        readings?.cancel()
    }

    /// Waits until `run()` has returned: soon after `stop`, whose longest wait is then one NATS request.
    func waitUntilFinished() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.finished { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Takes the partition over and evaluates it until stopped; a failure (the cluster unreachable, a snapshot
    /// that cannot be read) is logged and the takeover tried again.
    func run() async {
        defer {
            let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.finished = true
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
        while ending == nil, !Task.isCancelled {
            do {
                try await takeOverAndEvaluate()
                return
            } catch is CancellationError {
                return
            } catch {
                guard ending == nil else { return }
                logger.error("cannot take the partition over; trying again", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    // MARK: Takeover

    private struct Progress {
        /// The readings stream sequence through which decisions were recorded (by any owner).
        var decidedThrough: UInt64
        /// The decisions stream sequence of the last record on this partition's subject.
        var lastRecord: UInt64
        /// The snapshot bucket's revision of the partition's snapshot (nil: none yet).
        var snapshotRevision: UInt64?
        var lastSnapshotAt: ContinuousClock.Instant
    }

    private func takeOverAndEvaluate() async throws {
        let started = ContinuousClock.now
        let configuration = context.configuration
        let core = EngineCore(
            ruleSet: context.ruleSet,
            dispatcher: context.dispatcher,
            desiredState: DesiredStateTracker(retryIntervalMilliseconds: context.resendIntervalMilliseconds),
            store: nil,
            audit: context.audit,
            logger: logger
        )
        // 1. The last snapshot.
        let loaded = try await context.snapshots.load(partition: partition)
        if let snapshot = loaded?.snapshot {
            core.restorePartition(
                instances: snapshot.instances,
                sequences: snapshot.sequences,
                time: snapshot.time,
                position: snapshot.lastSequence
            )
        }
        // 2. The decisions fence: how far decisions were delivered, and a mark that refuses any later record
        //    of a deposed owner.
        let subject = PartitionedEngineConfiguration.decisionSubject(partition)
        let last = try await context.connection.lastMessage(inStream: configuration.decisionsStream, subject: subject)
        let lastWritten = try last.map { try DecisionRecord.decode($0.payload) }
        if let lastWritten, lastWritten.epoch > epoch {
            // A newer owner has written already: this lease is stale, and the lease service will find out.
            logger.warning(
                "a newer owner has taken the partition over: not taking it",
                metadata: ["new_epoch": "\(lastWritten.epoch)"]
            )
            stop(.lost)
            return
        }
        let decidedThrough = lastWritten?.sequence ?? 0
        let mark = DecisionRecord(
            partition: partition,
            epoch: epoch,
            sequence: decidedThrough,
            engine: configuration.engineID,
            takeover: true
        )
        let markSequence = try await context.connection.publishToStream(
            mark.encoded(decisions: []),
            subject: subject,
            expectedLastSubjectSequence: last?.streamSequence ?? 0
        )
        // 3. A snapshot at this epoch, which fences a deposed owner's snapshot writes.
        let snapshotRevision = try await saveSnapshot(of: core, replacing: loaded?.revision)
        let progress = Progress(
            decidedThrough: decidedThrough,
            lastRecord: markSequence,
            snapshotRevision: snapshotRevision,
            lastSnapshotAt: .now
        )
        // 4. Replay from the snapshot on, then live.
        let position = core.position
        let readings = try context.connection.readStream(
            configuration.readingsStream,
            filter: PartitionSubjects.readings(ofPartition: partition),
            from: position + 1
        )
        let stopped = state.withLock { state -> Bool in
            state.core = core
            state.readings = readings
            return state.ending != nil
        }
        defer { readings.cancel() }
        if stopped { readings.cancel() }
        logger.info(
            "partition taken over; replaying",
            metadata: [
                "from_sequence": "\(position + 1)", "decided_through": "\(decidedThrough)",
                "snapshot_instances": "\(loaded?.snapshot.instances.count ?? 0)",
            ]
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.tick() }
            group.addTask {
                try await self.evaluate(readings, core: core, progress: progress, takeoverStarted: started)
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    // MARK: Evaluation

    private func evaluate(
        _ readings: NATSSubscription<NATSStreamMessage>,
        core: EngineCore,
        progress initialProgress: Progress,
        takeoverStarted: ContinuousClock.Instant
    ) async throws {
        var progress = initialProgress
        let tickSubject = PartitionedEngineConfiguration.tickSubject(partition)
        var live = false
        var replayed = 0
        var lastCompleted = core.position
        for await message in readings {
            guard ending == nil else { break }
            let time = message.storedAtNanoseconds / 1_000_000
            let events: [EvaluationEvent]?
            if message.subject != tickSubject, let (_, topic) = DevicePartitioning.topic(ofSubject: message.subject) {
                events = core.decide(topic: topic, payload: message.payload, at: time, position: message.streamSequence)
            } else {
                events = core.decideTimers(at: time, position: message.streamSequence)  // a tick: the clock
            }
            guard var events else { break }
            let emitting = message.streamSequence > progress.decidedThrough
            if events.contains(where: \.isDecision) {
                // Replayed ones too: their desired states are re-sent under this owner's epoch.
                events = events.map(stampingEpoch)
                if emitting {
                    let record = DecisionRecord(
                        partition: partition,
                        epoch: epoch,
                        sequence: message.streamSequence,
                        engine: context.configuration.engineID
                    )
                    switch try await recordDecisions(record, events: events, core: core, progress: &progress) {
                    case .recorded, .stopped: break
                    case .deposed: stop(.lost)
                    }
                }
                // Stopped while the record was written: a lost lease emits nothing more; a handed-back one
                // ends here too, its snapshot before this message when the record was not written.
                guard ending == nil || ending == .released && message.streamSequence <= progress.decidedThrough
                else { break }
            }
            core.deliverRecorded(events, at: time, emitting: emitting)
            lastCompleted = message.streamSequence
            if !live {
                replayed += 1
                if message.pendingAfter == 0 {
                    live = true
                    logger.notice(
                        "partition live",
                        metadata: [
                            "replayed": "\(replayed)",
                            "takeover_ms": "\((ContinuousClock.now - takeoverStarted).milliseconds)",
                        ]
                    )
                }
            }
            if ContinuousClock.now - progress.lastSnapshotAt >= context.configuration.snapshotInterval {
                guard try await saveSnapshot(of: core, progress: &progress) else { break }
            }
        }
        // Handed back: the last snapshot, so the next owner replays nothing.
        if ending == .released, core.position == lastCompleted {
            _ = try? await saveSnapshot(of: core, progress: &progress)
        }
    }

    private enum Recording { case recorded, deposed, stopped }

    /// Writes a record after the last one this owner wrote: `.deposed` when another owner wrote since,
    /// `.stopped` when the worker was stopped before it could. A write whose acknowledgement was lost is
    /// recognised by reading the last record back.
    private func recordDecisions(
        _ record: DecisionRecord,
        events: [EvaluationEvent],
        core: EngineCore,
        progress: inout Progress
    ) async throws -> Recording {
        let lines = AuditLine.lines(for: events, in: core.ruleSet)
        let subject = PartitionedEngineConfiguration.decisionSubject(partition)
        let payload = record.encoded(decisions: lines)
        while ending == nil {
            do {
                progress.lastRecord = try await context.connection.publishToStream(
                    payload,
                    subject: subject,
                    expectedLastSubjectSequence: progress.lastRecord
                )
                progress.decidedThrough = record.sequence
                return .recorded
            } catch let error as NATSError where error.kind == .revisionMismatch {
                // Someone wrote after our last record. Our own earlier attempt whose acknowledgement was lost
                // carries our epoch: adopt it. A newer epoch is a new owner.
                guard let last = try await lastRecord(), let written = try? DecisionRecord.decode(last.payload) else {
                    continue
                }
                if written.epoch == epoch {
                    progress.lastRecord = last.streamSequence
                    progress.decidedThrough = max(progress.decidedThrough, written.sequence)
                    if written.sequence >= record.sequence { return .recorded }
                    continue
                }
                if written.epoch < epoch {
                    // An older owner wrote after our mark before it learnt it was deposed: we stay the owner.
                    logger.warning(
                        "an older owner wrote on the partition after this one took it over",
                        metadata: ["old_epoch": "\(written.epoch)", "sequence": "\(written.sequence)"]
                    )
                    progress.lastRecord = last.streamSequence
                    continue
                }
                logger.warning(
                    "another engine took the partition over: stopping it here",
                    metadata: ["sequence": "\(record.sequence)", "new_epoch": "\(written.epoch)"]
                )
                return .deposed
            } catch {
                logger.warning(
                    "cannot record decisions yet; trying again",
                    metadata: ["sequence": "\(record.sequence)", "error": "\(error)"]
                )
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        return .stopped
    }

    /// The last record on the partition's subject, read again until the cluster answers (nil: none, or stopped).
    private func lastRecord() async throws -> NATSStreamMessage? {
        while ending == nil {
            do {
                return try await context.connection.lastMessage(
                    inStream: context.configuration.decisionsStream,
                    subject: PartitionedEngineConfiguration.decisionSubject(partition)
                )
            } catch {
                logger.debug("cannot read the last decision record yet", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        return nil
    }

    /// Saves the partition's state at this epoch; false when a newer owner saved since (this one is deposed).
    /// A save that failed (the cluster did not answer) is tried again at the next interval.
    private func saveSnapshot(of core: EngineCore, progress: inout Progress) async throws -> Bool {
        progress.lastSnapshotAt = .now
        do {
            progress.snapshotRevision = try await saveSnapshot(of: core, replacing: progress.snapshotRevision)
            return true
        } catch PartitionSnapshotError.fenced {
            // Our own earlier save whose acknowledgement was lost carries our epoch: adopt its revision.
            if let current = try? await context.snapshots.load(partition: partition), current.snapshot.epoch == epoch {
                progress.snapshotRevision = current.revision
                return true
            }
            logger.warning("another engine wrote the partition's snapshot: stopping it here")
            stop(.lost)
            return false
        } catch {
            logger.warning("cannot save the partition's snapshot; trying again later", metadata: ["error": "\(error)"])
            return true
        }
    }

    private func saveSnapshot(of core: EngineCore, replacing revision: UInt64?) async throws -> UInt64 {
        let saved = core.partitionState()
        let snapshot = PartitionSnapshot(
            partition: partition,
            epoch: epoch,
            lastSequence: saved.position,
            time: saved.time,
            instances: saved.instances,
            sequences: saved.sequences
        )
        return try await context.snapshots.save(snapshot, replacing: revision)
    }

    /// Commands name the epoch of the lease they were decided under (and the partition), so that one from a
    /// deposed owner can be told apart, unless the rule's payload sets those keys itself.
    private func stampingEpoch(_ event: EvaluationEvent) -> EvaluationEvent {
        guard case .action(var action) = event,
            case .publish(let topic, .object(var fields), let qos, let retain) = action.action
        else { return event }
        if !fields.contains(where: { $0.key == "epoch" }) {
            fields.append((key: "epoch", value: .number(Double(epoch))))
        }
        if !fields.contains(where: { $0.key == "partition" }) {
            fields.append((key: "partition", value: .number(Double(partition))))
        }
        action.action = .publish(topic: topic, payload: .object(fields), qos: qos, retain: retain)
        return .action(action)
    }

    // MARK: Time

    /// Stamps the partition with the time every `tickInterval` and sends due re-sends, until stopped.
    private func tick() async {
        let subject = PartitionedEngineConfiguration.tickSubject(partition)
        // Ends only when cancelled, after the evaluation ended (which writes the last snapshot).
        while !Task.isCancelled {
            if ending == nil {
                try? context.connection.publish([], to: subject)
                core?.enqueueDueResends(at: WallClock.nowMilliseconds())
            }
            try? await Task.sleep(for: context.configuration.tickInterval)
        }
    }
}

extension EvaluationEvent {
    /// A transition or an action: what the decisions stream records.
    fileprivate var isDecision: Bool {
        switch self {
        case .transition, .action: true
        default: false
        }
    }
}

extension Duration {
    fileprivate var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
