import Foundation
import Logging
import MQTT
import Rules
import ServiceLifecycle
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
    /// How long SIGTERM waits for outstanding commands to be acknowledged.
    public var shutdownTimeout: Duration = .seconds(10)
    /// Least time between two re-sends of a command to an actuator that reports another state.
    public var resendIntervalMilliseconds: Int64 = 5_000
    /// Where the engine's metrics go (`rules-engine run` makes a Prometheus registry for `--http`).
    public var metrics: EngineMetrics = .discarded
    /// Feeds the live page (`--http`); nil keeps nothing for it.
    public var liveFeed: LiveFeed?

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
        let dispatcher = ActionDispatcher(
            handlers: [
                PublishActionHandler(client: client), LogActionHandler(logger: logger),
                CommandActionHandler(logger: logger),
            ],
            logger: logger,
            metrics: configuration.metrics
        )
        core = EngineCore(
            ruleSet: ruleSet,
            dispatcher: dispatcher,
            desiredState: desiredState,
            store: store,
            audit: try configuration.auditFile.map { try AuditTrail(path: $0) },
            logger: logger,
            metrics: configuration.metrics,
            liveFeed: configuration.liveFeed,
            announce: { [client, transitionsTopic = "pipeline/engine/\(clientID)/transitions"] event in
                _ = try? client.send(Array(event.jsonText.utf8), to: transitionsTopic, qos: .atMostOnce)
            }
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
        logger.info("rules loaded", metadata: ["rules": "\(ruleSet.rules.count)", "filters": "\(core.filters)"])
        recordReload(succeeded: true, rules: ruleSet.rules.count)
    }

    public func run() async throws {
        let dispatching = Task { await self.core.dispatcher.run() }
        defer { core.dispatcher.finish() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.keepPresence() }
            group.addTask { try await self.runClock() }
            group.addTask { try await self.reloadOnChange() }
            group.addTask { try await self.reloadOnHangup() }

            try await client.waitUntilConnected()
            try await client.subscribe(to: core.filters, qos: .atLeastOnce)
            onReady()
            logger.info("ready", metadata: ["client_id": "\(client.clientID)"])

            try? await gracefulShutdown()
            // Readings keep being evaluated until the client disconnects after us; actions decided from
            // now on are logged as not run.
            logger.info("shutting down: waiting for outstanding actions")
            core.dispatcher.finish()
            let drained =
                (try? await withTimeout(configuration.shutdownTimeout, "draining actions") {
                    await dispatching.value
                    return true
                }) ?? false
            if !drained { logger.warning("shutdown timeout: some actions were not acknowledged") }
            try? await withTimeout(.seconds(2), "publishing offline") {
                try await self.client.publish("offline", to: self.statusTopic, qos: .atLeastOnce, retain: true)
            }
            group.cancelAll()
        }
        var summary: Logger.Metadata = [
            "messages": "\(core.handledCount)", "instances": "\(core.instanceCount)",
        ]
        for (reason, total) in core.problems.totals { summary[reason] = "\(total)" }
        logger.info("stopped", metadata: summary)
    }

    /// Publishes `online` (retained) on every connect; the will says `offline`.
    private func keepPresence() async throws {
        var connections = 0
        for await event in client.connectionEvents() {
            guard case .connected = event else {
                configuration.metrics.connected.record(0)
                logger.warning("connection to the broker lost; reconnecting")
                continue
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
            for resend in core.desiredState.dueResends(at: now) {
                logger.notice(
                    "re-sending a command the actuator did not apply",
                    metadata: ["rule": "\(resend.ruleID)", "reason": "\(resend.reason)"]
                )
                core.send(resend)
            }
            core.compactStateIfNeeded()
            core.problems.flush(at: WallClock.nowMilliseconds())
            let wait = core.nextDeadline.map { max(1, min(50, $0 - WallClock.nowMilliseconds())) } ?? 50
            try await Task.sleep(for: .milliseconds(wait))
        }
    }

    private func reloadOnChange() async throws {
        let watcher = try RuleDirectoryWatcher(directory: configuration.rulesDirectory)
        defer { watcher.close() }
        var handled = 0
        for await _ in watcher.changes {
            // Debounce: an editor's save is several events; reload once, when no event came for a while.
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

    private func reloadOnHangup() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
            await reload(reason: "SIGHUP")
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
        let (old, new) = core.replaceRules(with: ruleSet)
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
                "trigger": "\(reason)", "rules": "\(ruleSet.rules.count)", "subscribed": "\(added)",
                "unsubscribed": "\(removed)",
            ]
        )
    }
}

extension RulesEngineService {
    /// Why the engine is not healthy (not connected, no rules), or nil when it is.
    public var healthProblem: String? {
        if !client.isConnected { return "not connected to the broker" }
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
        return (configuration.liveFeed ?? LiveFeed()).snapshot(instances: core.instanceReports(ruleID: nil), now: now)
    }

    func recordReload(succeeded: Bool, rules: Int? = nil) {
        configuration.metrics.lastReloadSuccess.record(succeeded ? 1 : 0)
        configuration.metrics.lastReloadTime.record(Double(WallClock.nowMilliseconds()) / 1000)
        if let rules { configuration.metrics.rulesLoaded.record(rules) }
    }
}

/// Lets the MQTT message handler reach the core, which is made after the client.
private final class CoreBox: @unchecked Sendable {
    // Written once during init, before the client runs; read on the network thread afterwards.
    var core: EngineCore?
}
