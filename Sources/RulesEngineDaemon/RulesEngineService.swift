import CoreMetrics
import FileFormats
import Foundation
import InputFiles
import Logging
import MQTT
import Rules
import ServiceLifecycle
import ServiceSupport
import Synchronization
import UnixSignals

/// What `rules-engine run` needs.
public struct RulesEngineConfiguration: Sendable {
    /// The folder of rule files.
    public var rulesDirectory: String
    /// Where instance state survives restarts; nil keeps it in memory only.
    public var stateDirectory: String?
    /// Appends one JSON line per transition and command here, when set.
    public var auditFile: String?
    /// The broker connection (the engine sets persistent session, QoS 1 subscriptions, the presence will).
    public var mqtt: MQTTConfiguration
    /// Quiet time after a file change before reloading.
    public var reloadDebounce: Duration = .milliseconds(300)
    /// How long SIGTERM may take in all (draining, acknowledgements, `offline`); the process exits within it.
    public var shutdownTimeout: Duration = .seconds(8)
    /// Least time between two re-sends of a command to an actuator that reports another state.
    public var resendIntervalMilliseconds: Int64 = 5_000
    /// Where the engine's metrics go (`rules-engine run` makes a Prometheus registry for `--http`).
    public var metrics: EngineMetrics = .discarded
    /// Feeds the live page (`--http`); nil keeps nothing for it.
    public var liveFeed: LiveFeed?
    /// Handlers of actions beyond publish, log and command (`webhook`).
    public var actionHandlers: [any ActionHandler] = []
    /// Commands waiting for the broker's acknowledgement at most; past it they are held back (`ActionDispatcher`).
    public var maximumUnacknowledgedCommands = 4_096
    /// Publishes each transition on `pipeline/engine/<client-id>/transitions` (QoS 0) when set.
    public var announcesTransitions = false
    /// Told of every transition (`--alertmanager`).
    public var transitionObservers: [any TransitionObserver] = []

    public init(rulesDirectory: String, stateDirectory: String? = nil, mqtt: MQTTConfiguration) {
        self.rulesDirectory = rulesDirectory
        self.stateDirectory = stateDirectory
        self.mqtt = mqtt
    }
}

/// The rules daemon: evaluates every reading, drives timers with the wall clock, runs actions,
/// reloads rules on change and SIGHUP, keeps presence, and shuts down cleanly.
///
/// Run it in a `ServiceGroup` after its `client`: `[engine.client, engine]`, so that on SIGTERM the
/// engine drains first and the client disconnects last.
public final class RulesEngineService: Service {
    /// The engine's MQTT client; run it in the same service group.
    public let client: MQTTClient
    let core: EngineCore
    let configuration: RulesEngineConfiguration
    let logger: Logger
    let onReady: @Sendable () -> Void
    let statusTopic: String

    /// Loads and validates the rules (throws `RuleLoadError` with every problem) and prepares the client.
    public init(
        configuration: RulesEngineConfiguration,
        logger: Logger,
        onReady: @escaping @Sendable () -> Void
    ) throws {
        self.configuration = configuration
        self.logger = logger
        self.onReady = onReady
        let ruleSet = try RuleFiles.load([configuration.rulesDirectory])
        var mqtt = configuration.mqtt
        mqtt.cleanSession = false
        let clientID = mqtt.clientID ?? "rules-engine"
        mqtt.clientID = clientID
        statusTopic = "pipeline/engine/\(clientID)/status"
        mqtt.will = MQTTWill(topic: statusTopic, payload: Array("offline".utf8), qos: .atLeastOnce, retain: true)
        let store = try configuration.stateDirectory.map { try InstanceStateStore(directory: $0) }
        let desiredState = DesiredStateTracker(retryIntervalMilliseconds: configuration.resendIntervalMilliseconds)
        // The client and the dispatcher need each other (publish actions go through the client):
        // the dispatcher is made after the client, and the core reaches it through the box.
        let coreBox = CoreBox()
        client = try MQTTClient(configuration: mqtt, logger: logger) { message in
            coreBox.core?.handle(message, at: WallClock.nowMilliseconds())
        }
        let dispatcher = ActionDispatcher.forEngine(client: client, configuration: configuration, logger: logger)
        var announce: (@Sendable (TransitionRecord) -> Void)?
        if configuration.announcesTransitions {
            announce = { [client, transitionsTopic = "pipeline/engine/\(clientID)/transitions"] record in
                _ = try? client.send(record.announcementBytes, to: transitionsTopic, qos: .atMostOnce)
            }
        }
        core = EngineCore(
            ruleSet: ruleSet,
            dispatcher: dispatcher,
            desiredState: desiredState,
            store: store,
            audit: try configuration.auditFile.map { try AuditTrail(path: $0) },
            logger: logger,
            metrics: configuration.metrics,
            liveFeed: configuration.liveFeed,
            observers: configuration.transitionObservers,
            announce: announce,
            stopAcknowledging: { [client] in client.shutDownSending() }
        )
        coreBox.core = core
        if let store {
            let saved = try store.load()
            let restored = core.restore(saved, now: WallClock.nowMilliseconds())
            if try core.audit?.completeWith(saved.lastAuditLines) == true {
                logger.notice(
                    "wrote audit lines decided before the last stop but not yet in the audit file",
                    metadata: ["count": "\(saved.lastAuditLines.count)"]
                )
            }
            logger.info(
                "restored rule instances",
                metadata: [
                    "count": "\(restored)", "sequences": "\(saved.sequences.count)", "state_dir": "\(store.directory)",
                ]
            )
        }
        logger.info("rules loaded", metadata: ["rules": "\(ruleSet.rules.count)", "filters": "\(core.filters.count)"])
        logMergedFilters()
        recordReload(succeeded: true, rules: ruleSet.rules.count)
    }

    /// Runs until SIGTERM (graceful shutdown) or until a part of the engine fails; then drains (see
    /// `drain()`). Every part is a child task: the first one to fail ends the engine with its error.
    public func run() async throws {
        // Trapped before anything can say `ready`: SIGHUP's default ends the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let failure = await withThrowingTaskGroup(of: Void.self) { group -> (any Error)? in
            group.addTask { await self.core.dispatcher.run() }
            group.addTask { try await self.keepPresence() }
            group.addTask { try await BrokerConnectionReporter(client: self.client, logger: self.logger).run() }
            group.addTask { try await self.runClock() }
            group.addTask { try await self.runReloads(hangups: hangups) }
            group.addTask { try await self.startThenAwaitShutdown() }
            // The shutdown waiter ends first on SIGTERM; the other parts run until cancelled or until they fail.
            var failure: (any Error)?
            do {
                try await group.next()
            } catch {
                failure = error
                logger.error("engine failed; shutting down", metadata: ["error": "\(error)"])
            }
            await drain()
            group.cancelAll()
            while true {
                do {
                    guard try await group.next() != nil else { break }
                } catch {}  // cancelled parts
            }
            return failure
        }
        var summary: Logger.Metadata = [
            "messages": "\(core.handledCount)", "instances": "\(core.instanceCount)",
        ]
        for (reason, total) in core.problems.totals { summary[reason] = "\(total)" }
        logger.info("stopped", metadata: summary)
        if let failure { throw failure }
    }

    /// Connects and subscribes (given up at SIGTERM: a broker that is never reached must not hold up the
    /// shutdown), says `ready`, then waits for SIGTERM.
    private func startThenAwaitShutdown() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                try await self.client.waitUntilConnected()
                try await self.client.subscribe(to: self.core.filters, qos: .atLeastOnce)
            }
        } catch is CancellationError {
            logger.notice("shutting down before the engine was ready")
            return
        }
        onReady()
        logger.info("ready", metadata: ["client_id": "\(client.clientID)"])
        try? await gracefulShutdown()
    }

    /// What SIGTERM does with a backlog (docs/engine.md, "SIGTERM"), within `shutdownTimeout`:
    /// 1. The intake closes: no reading is evaluated, no timer fires. The next reading that arrives shuts the
    ///    connection's sending side before its handler returns, so it and every later one stay
    ///    unacknowledged and the broker redelivers them to the persistent session on the next start.
    /// 2. Every decision already made is handed to its handler; commands are acknowledged on the connection
    ///    while it is whole. Those still unacknowledged when it was cut (or lost) are published again on a
    ///    short-lived connection of their own and acknowledged there (QoS 1 allows the duplicate; a
    ///    command is a desired state).
    /// 3. `offline` is published when the connection is whole (otherwise the will says it); the client
    ///    then disconnects.
    private func drain() async {
        let clock = ContinuousClock()
        let budget = configuration.shutdownTimeout
        let deadline = clock.now.advanced(by: budget * 0.8)
        core.closeIntake()
        logger.info("shutting down: taking no new readings, delivering what was decided")
        func wait(until done: () -> Bool, before limit: ContinuousClock.Instant) async {
            while !done(), clock.now < limit, !Task.isCancelled { try? await Task.sleep(for: .milliseconds(5)) }
        }
        await wait(until: { core.outboxIsIdle }, before: deadline)
        core.dispatcher.finish()
        await wait(
            until: { core.dispatcher.unacknowledged.isEmpty || core.refusedCount > 0 || !client.isConnected },
            before: min(deadline, clock.now.advanced(by: budget * 0.25))
        )
        let left = core.dispatcher.unacknowledged
        var republished = 0
        if !left.isEmpty {
            republished = await republish(left, before: deadline)
        }
        core.dispatcher.abandonUnacknowledged()
        await wait(until: { core.dispatcher.unfinishedCount == 0 }, before: deadline)
        let metadata: Logger.Metadata = [
            "left_for_redelivery": "\(core.refusedCount)",
            "republished": "\(republished) of \(left.count)",
            "actions_running": "\(core.dispatcher.unfinishedCount)",
        ]
        if republished < left.count {
            logger.error("shutdown: some commands were not delivered", metadata: metadata)
        } else {
            logger.info("shutdown: every decided command delivered", metadata: metadata)
        }
        guard core.refusedCount == 0, client.isConnected else { return }
        try? await withTimeout(budget * 0.1, "publishing offline") {
            try await self.client.publish("offline", to: self.statusTopic, qos: .atLeastOnce, retain: true)
        }
    }

    /// Publishes commands again on a connection of their own; returns how many the broker acknowledged.
    private func republish(_ actions: [FiredAction], before deadline: ContinuousClock.Instant) async -> Int {
        var mqtt = client.configuration
        mqtt.clientID = client.clientID + "-drain"
        mqtt.cleanSession = true
        mqtt.will = nil
        guard let drainClient = try? MQTTClient(configuration: mqtt, logger: logger) else { return 0 }
        let acknowledged = Atomic<Int>(0)
        let remaining = ContinuousClock.now.duration(to: deadline)
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await drainClient.runUntilCancelled() }
            do {
                try await withTimeout(remaining, "publishing unacknowledged commands") {
                    try await drainClient.waitUntilConnected()
                    var receipts: [MQTTClient.PublishReceipt] = []
                    for action in actions {
                        guard case .publish(let topic, let payload, let qos, let retain) = action.action else {
                            continue
                        }
                        receipts.append(
                            try drainClient.send(
                                RenderedAction.payloadBytes(payload),
                                to: topic,
                                qos: MQTTQoS(rawValue: qos) ?? .atLeastOnce,
                                retain: retain
                            )
                        )
                    }
                    for receipt in receipts {
                        try await drainClient.acknowledgement(of: receipt)
                        acknowledged.add(1, ordering: .relaxed)
                    }
                }
            } catch {
                logger.error("cannot publish the unacknowledged commands again", metadata: ["error": "\(error)"])
            }
            group.cancelAll()
        }
        return acknowledged.load(ordering: .relaxed)
    }

    /// Publishes `online` (retained) on every connect; the will says `offline`.
    private func keepPresence() async throws {
        var connections = 0
        for await event in client.connectionEvents() {
            guard case .connected = event else {
                configuration.metrics.connected.record(0)
                continue  // BrokerConnectionReporter says so
            }
            configuration.metrics.connected.record(1)
            connections += 1
            if connections > 1 { configuration.metrics.reconnects.increment() }
            do {
                try await client.publish("online", to: statusTopic, qos: .atLeastOnce, retain: true)
            } catch {
                logger.debug("cannot publish presence", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Drives `for`, `stale` and deferred transitions with the wall clock, with no reading needed.
    private func runClock() async throws {
        var lastOversize = 0
        while !Task.isCancelled {
            let now = WallClock.nowMilliseconds()
            if let deadline = core.nextDeadline, deadline <= now {
                core.advance(to: now)
            }
            let oversize = client.oversizeMessageCount
            if oversize > lastOversize {
                for _ in lastOversize..<oversize {
                    configuration.metrics.rejected("too_large")
                    core.problems.record(
                        "too_large",
                        at: now,
                        detail: ["limit": "\(client.configuration.maximumPayloadSize)"]
                    )
                }
                lastOversize = oversize
            }
            // Nothing can be sent while disconnected: the re-sends wait for the connection.
            if client.isConnected { core.sendDueResends(at: now) }
            core.compactStateIfNeeded()
            core.problems.flush(at: WallClock.nowMilliseconds())
            let wait = core.nextDeadline.map { max(1, min(50, $0 - WallClock.nowMilliseconds())) } ?? 50
            try await Task.sleep(for: .milliseconds(wait))
        }
    }

    private enum ReloadTrigger { case filesChanged, hangup }

    /// File changes and SIGHUP, through one stream: two reloads never run at once.
    private func runReloads(hangups: UnixSignalsSequence) async throws {
        let watcher = try RuleDirectoryWatcher(directory: configuration.rulesDirectory)
        defer { watcher.close() }
        let (triggers, trigger) = AsyncStream.makeStream(of: ReloadTrigger.self, bufferingPolicy: .bufferingNewest(8))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in hangups { trigger.yield(.hangup) }
            }
            group.addTask { [logger] in
                do {
                    for try await _ in watcher.changes { trigger.yield(.filesChanged) }
                } catch {
                    logger.error(
                        "the rules folder is no longer watched; SIGHUP still reloads",
                        metadata: ["error": "\(error)"]
                    )
                }
            }
            var handled = 0
            for await reason in triggers {
                switch reason {
                case .hangup:
                    await reload(reason: "SIGHUP")
                case .filesChanged:
                    // Debounce: an editor's save is several events; reload once, when none came for a while.
                    var seen = watcher.eventCount
                    guard seen != handled else { continue }
                    while true {
                        try await Task.sleep(for: configuration.reloadDebounce)
                        let now = watcher.eventCount
                        if now == seen { break }
                        seen = now
                    }
                    handled = seen
                    await reload(reason: "rule files changed")
                }
            }
            group.cancelAll()
        }
    }

    /// Validates the whole new set; on failure keeps every rule of the last good set.
    func reload(reason: String) async {
        let ruleSet: RuleSet
        do {
            ruleSet = try RuleFiles.load([configuration.rulesDirectory])
        } catch let error as RuleLoadError {
            logger.error("reload failed; keeping the last good rules", metadata: ["trigger": "\(reason)"])
            for diagnostic in error.diagnostics {
                logger.error("\(diagnostic.location): \(diagnostic.message)")
            }
            recordReload(succeeded: false)
            configuration.metrics.reload("failed")
            return
        } catch {
            logger.error("reload failed; keeping the last good rules", metadata: ["error": "\(error)"])
            recordReload(succeeded: false)
            configuration.metrics.reload("failed")
            return
        }
        recordReload(succeeded: true, rules: ruleSet.rules.count)
        guard ruleSet.rules != core.ruleSet.rules else {
            configuration.metrics.reload("unchanged")
            // An editor's temporary file, a touch, or a second event for an edit already applied.
            logger.info("rules unchanged", metadata: ["trigger": "\(reason)", "rules": "\(ruleSet.rules.count)"])
            return
        }
        configuration.metrics.reload("applied")
        let (old, new, changes, dropped) = core.replaceRules(with: ruleSet)
        logChanges(changes, dropped: dropped)
        logMergedFilters()
        let added = new.filter { !old.contains($0) }
        let removed = old.filter { !new.contains($0) }
        do {
            // New filters first, so no reading falls between two subscriptions.
            if !added.isEmpty { try await client.subscribe(to: added, qos: .atLeastOnce) }
            if !removed.isEmpty { try await client.unsubscribe(from: removed) }
        } catch {
            logger.error("cannot adjust subscriptions after reload", metadata: ["error": "\(error)"])
        }
        logger.notice(
            "rules reloaded",
            metadata: [
                "trigger": "\(reason)", "rules": "\(ruleSet.rules.count)", "added": "\(changes.added)",
                "changed": "\(changes.changed + changes.windowsRestarted)", "removed": "\(changes.removed)",
                "subscribed": "\(added)", "unsubscribed": "\(removed)",
            ]
        )
    }

    /// Says which overlapping filters are subscribed as one (a broker delivers a message once per matching
    /// subscription), so that a user who looks at the broker's subscriptions knows why.
    private func logMergedFilters() {
        let needed = core.neededFilters
        let subscribed = core.filters
        let merged = subscribed.filter { !needed.contains($0) }
        guard !merged.isEmpty else { return }
        for filter in merged {
            let parts = needed.filter { !subscribed.contains($0) && TopicFilterCover.overlap(filter, $0) }
            logger.info(
                "overlapping topic filters subscribed as one, so that each reading is delivered and evaluated once",
                metadata: ["subscribed": "\(filter)", "rule_filters": "\(parts)"]
            )
        }
    }

    /// One line per rule a reload added, changed or removed. Instances of a changed or removed rule end
    /// without `on_clear`: what a firing one switched on stays as it is, which the line says.
    private func logChanges(_ changes: RuleSetChanges, dropped: [String: (all: Int, firing: Int)]) {
        for id in changes.added { logger.notice("rule added", metadata: ["rule": "\(id)"]) }
        for (id, verb) in changes.changed.map({ ($0, "changed") }) + changes.removed.map({ ($0, "removed") }) {
            let counts = dropped[id] ?? (0, 0)
            var message =
                verb == "changed" ? "rule changed: its instances start over" : "rule removed: its instances end"
            if counts.firing > 0 {
                message += "; firing ones end without on_clear, so what they switched on stays as it is"
                if verb == "changed" { message += " until the rule fires and clears again" }
            }
            logger.notice(
                "\(message)",
                metadata: ["rule": "\(id)", "instances": "\(counts.all)", "firing": "\(counts.firing)"]
            )
        }
    }
}

extension RulesEngineService {
    /// Why the engine is not healthy (not connected, no rules), or nil when it is.
    public var healthProblem: String? {
        if !client.isConnected {
            return "not connected to the broker: \(client.lastConnectionProblem ?? "no answer yet")"
        }
        if core.ruleSet.rules.isEmpty { return "no rules loaded" }
        return nil
    }

    /// The rules in effect.
    public var ruleSet: RuleSet { core.ruleSet }

    /// Every rule instance (of one rule, when given), as `/api/instances` shows them.
    public func instanceReports(ruleID: String? = nil) -> [InstanceReport] {
        core.instanceReports(ruleID: ruleID)
    }

    /// What the live page draws now (empty without a live feed).
    public func liveSnapshot() -> JSONValue {
        let now = WallClock.nowMilliseconds()
        let brokerProblem =
            client.isConnected ? nil : "not connected to the broker: \(client.lastConnectionProblem ?? "no answer yet")"
        return (configuration.liveFeed ?? LiveFeed()).snapshot(
            instances: core.instanceReports(ruleID: nil),
            ruleSet: core.ruleSet,
            brokerProblem: brokerProblem,
            now: now
        )
    }

    func recordReload(succeeded: Bool, rules: Int? = nil) {
        configuration.metrics.lastReloadSuccess.record(succeeded ? 1 : 0)
        configuration.metrics.lastReloadTime.record(Double(WallClock.nowMilliseconds()) / 1000)
        if let rules { configuration.metrics.rulesLoaded.record(rules) }
    }
}

extension ActionDispatcher {
    /// The engine's dispatcher: `publish` actions through `client`, `log` and `command` actions, and the
    /// configuration's other handlers, with its metrics and its bound on unacknowledged commands.
    public static func forEngine(
        client: MQTTClient,
        configuration: RulesEngineConfiguration,
        logger: Logger
    ) -> ActionDispatcher {
        ActionDispatcher(
            handlers: [
                PublishActionHandler(client: client), LogActionHandler(logger: logger),
                CommandActionHandler(logger: logger),
            ] + configuration.actionHandlers,
            logger: logger,
            metrics: configuration.metrics,
            maximumUnacknowledged: configuration.maximumUnacknowledgedCommands
        )
    }
}

/// Lets the MQTT message handler reach the core, which is made after the client.
private final class CoreBox: @unchecked Sendable {
    // Written once during init, before the client runs; read on the network thread afterwards.
    var core: EngineCore?
}
