import FileFormats
import InputFiles
import Logging
import MQTT
import NATS
import PartitionLeases
import PartitionState
import Rules
import RulesEngineDaemon
import ServiceLifecycle
import ServiceSupport
import Synchronization
import UnixSignals

/// `rules-engine run --nats … --partitions P`: evaluates the partitions this engine holds leases on, reading
/// them from the JetStream stream they are mapped into, and sends commands over MQTT (docs/scale-out.md).
///
/// Run it in a `ServiceGroup` after its `client`: `[engine.client, engine]`.
public final class PartitionedEngineService: Service {
    /// The MQTT client for commands, actuator states and presence; run it in the same service group.
    public let client: MQTTClient
    private let engine: RulesEngineConfiguration
    private let configuration: PartitionedEngineConfiguration
    private let ruleSet: RuleSet
    private let dispatcher: ActionDispatcher
    private let audit: AuditTrail?
    private let logger: Logger
    private let onReady: @Sendable () -> Void
    private let statusTopic: String
    private let router = WorkersReference()

    /// Loads and validates the rules (throws `RuleLoadError`) and prepares the MQTT client.
    public init(
        engine: RulesEngineConfiguration,
        partitioned configuration: PartitionedEngineConfiguration,
        logger: Logger,
        onReady: @escaping @Sendable () -> Void
    ) throws {
        self.engine = engine
        self.configuration = configuration
        self.logger = logger
        self.onReady = onReady
        _ = try configuration.leaseConfiguration()  // the partition count and engine id, checked before starting
        ruleSet = try RuleFiles.load([engine.rulesDirectory])
        var mqtt = engine.mqtt
        let clientID = mqtt.clientID ?? "rules-engine-\(configuration.engineID)"
        mqtt.clientID = clientID
        statusTopic = "pipeline/engine/\(clientID)/status"
        mqtt.will = MQTTWill(topic: statusTopic, payload: Array("offline".utf8), qos: .atLeastOnce, retain: true)
        let router = self.router
        client = try MQTTClient(configuration: mqtt, logger: logger) { message in
            router.workers.withLock { $0 }?.observeActuatorState(
                topic: message.topic,
                payload: message.payload,
                at: WallClock.nowMilliseconds()
            )
        }
        dispatcher = ActionDispatcher.forEngine(client: client, configuration: engine, logger: logger)
        audit = try engine.auditFile.map { try AuditTrail(path: $0) }
        logger.info(
            "rules loaded",
            metadata: ["rules": "\(ruleSet.rules.count)", "partitions": "\(configuration.partitions)"]
        )
    }

    private enum Part { case leases, other }

    /// Connects to NATS (until it answers, or SIGTERM), makes the streams and buckets, then takes leases and
    /// evaluates until SIGTERM, when every lease is handed back with its partition's last snapshot.
    public func run() async throws {
        // Trapped before anything can say `ready`: SIGHUP's default ends the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        guard let connection = try await connectToNATS() else { return }
        defer { connection.close() }
        let snapshots: PartitionSnapshotStore
        do {
            snapshots = try await cancelWhenGracefulShutdown { try await self.prepareCluster(connection) }
        } catch is CancellationError {
            logger.notice("shutting down before the cluster was ready")
            return
        }
        let workers = PartitionWorkers(
            context: PartitionWorkerContext(
                configuration: configuration,
                connection: connection,
                snapshots: snapshots,
                ruleSet: ruleSet,
                dispatcher: dispatcher,
                audit: audit,
                resendIntervalMilliseconds: engine.resendIntervalMilliseconds,
                logger: logger
            )
        )
        router.workers.withLock { $0 = workers }
        let leases = PartitionLeaseService(
            configuration: try configuration.leaseConfiguration(),
            connection: connection,
            delegate: workers,
            logger: logger
        )
        try await withThrowingTaskGroup(of: Part.self) { group in
            group.addTask {
                await self.dispatcher.run()
                return .other
            }
            group.addTask {
                await workers.run()
                return .other
            }
            group.addTask {
                try await BrokerConnectionReporter(client: self.client, logger: self.logger).run()
                return .other
            }
            group.addTask {
                try await self.keepPresence()
                return .other
            }
            group.addTask {
                await self.explainHangups(hangups)
                return .other
            }
            group.addTask {
                try await self.subscribeThenAwaitShutdown()
                return .other
            }
            group.addTask {
                try await leases.run()
                return .leases
            }
            // The lease service ends after SIGTERM, once every partition was handed back; anything else that
            // ends first has failed.
            var failure: (any Error)?
            do {
                while let part = try await group.next(), part != .leases {}
            } catch {
                failure = error
                logger.error("engine failed; shutting down", metadata: ["error": "\(error)"])
            }
            workers.finish()
            await drainCommands()
            group.cancelAll()
            while true {
                do {
                    guard try await group.next() != nil else { break }
                } catch {}  // cancelled parts
            }
            if let failure { throw failure }
        }
        logger.info("stopped", metadata: ["rules": "\(ruleSet.rules.count)"])
    }

    /// Connects, retrying while no server answers; nil when SIGTERM came first.
    private func connectToNATS() async throws -> NATSConnection? {
        while true {
            do {
                return try await cancelWhenGracefulShutdown {
                    try await NATSConnection.connect(self.configuration.natsConfiguration, logger: self.logger)
                }
            } catch is CancellationError {
                return nil
            } catch {
                logger.error(
                    "cannot reach NATS; trying again",
                    metadata: ["servers": "\(configuration.servers)", "error": "\(error)"]
                )
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
                } catch { return nil }
            }
        }
    }

    /// The readings and decisions streams and the snapshot bucket, made when missing (a new cluster elects
    /// their leaders first: retried for a while).
    private func prepareCluster(_ connection: NATSConnection) async throws -> PartitionSnapshotStore {
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await connection.createStream(
                    named: configuration.readingsStream,
                    subjects: [PartitionSubjects.allReadings],
                    replicas: configuration.replicas
                )
                try await connection.createStream(
                    named: configuration.decisionsStream,
                    subjects: [PartitionSubjects.allDecisions],
                    replicas: configuration.replicas
                )
                return try await PartitionSnapshotStore(connection: connection, replicas: configuration.replicas)
            } catch let error as NATSError where error.kind == .timeout && attempt < 10 {
                logger.notice("the cluster is not ready yet; trying again", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Every engine of a cluster must decide alike, so one engine alone does not reload its rules: SIGHUP is
    /// answered with what to do instead (instead of ending the process, SIGHUP's default).
    private func explainHangups(_ hangups: UnixSignalsSequence) async {
        for await _ in hangups {
            logger.notice(
                "SIGHUP: with --nats the rules are not reloaded; restart the engines one at a time (docs/scale-out.md)"
            )
        }
    }

    /// Subscribes to the actuators' state topics, says `ready`, then waits for SIGTERM.
    private func subscribeThenAwaitShutdown() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                try await self.client.waitUntilConnected()
                let filters = TopicFilterCover(covering: DesiredStateTracker.stateFilters(for: self.ruleSet)).filters
                if !filters.isEmpty { try await self.client.subscribe(to: filters, qos: .atLeastOnce) }
            }
        } catch is CancellationError {
            return
        }
        onReady()
        logger.info("ready", metadata: ["client_id": "\(client.clientID)", "engine_id": "\(configuration.engineID)"])
        try? await gracefulShutdown()
    }

    /// Publishes `online` (retained) on every connect; the will says `offline`.
    private func keepPresence() async throws {
        for await event in client.connectionEvents() {
            guard case .connected = event else { continue }
            do {
                try await client.publish("online", to: statusTopic, qos: .atLeastOnce, retain: true)
            } catch {
                logger.debug("cannot publish presence", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Hands the decided commands to their handlers and waits (bounded) for their acknowledgements, then
    /// says `offline`.
    private func drainCommands() async {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: engine.shutdownTimeout * 0.5)
        dispatcher.finish()
        while !dispatcher.unacknowledged.isEmpty || dispatcher.unfinishedCount > 0, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        if !dispatcher.unacknowledged.isEmpty {
            logger.error(
                "shutdown: some commands were not acknowledged",
                metadata: ["unacknowledged": "\(dispatcher.unacknowledged.count)"]
            )
        }
        guard client.isConnected else { return }
        try? await withTimeout(engine.shutdownTimeout * 0.1, "publishing offline") {
            try await self.client.publish("offline", to: self.statusTopic, qos: .atLeastOnce, retain: true)
        }
    }
}

/// Reaches the workers from the MQTT client's message handler, which is made before them.
private final class WorkersReference: Sendable {
    let workers = Mutex<PartitionWorkers?>(nil)
}
