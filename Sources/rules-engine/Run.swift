import ArgumentParser
import CommandLineOptions
import CoreMetrics
import EngineHTTP
import FileFormats
import Foundation
import InputFiles
import Logging
import MQTT
import PartitionedEngine
import Prometheus
import RuleTools
import Rules
import RulesEngineDaemon
import ServiceLifecycle
import ServiceSupport
import Simulation

#if canImport(Glibc)
import Glibc
import UnixSignals
#endif

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate the rules live over MQTT and run their actions (prints 'ready' once subscribed)."
    )

    @Option(help: "The rules folder (reloaded on change and on SIGHUP).") var rules: String
    @Option(help: "Keep rule instance state here across restarts.") var stateDir: String?
    @Option(help: "Append one JSON line per transition and command to this file.") var audit: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: Logger.Level = .info
    @Option(help: "Least time between re-sends of a command an actuator did not apply (e.g. 5s).")
    var resendInterval: String = "5s"
    @Option(help: "Serve /metrics, /healthz and /api/… on HOST:PORT (e.g. 127.0.0.1:9464); off by default.")
    var http: String?
    @Option(help: "Post firing rule instances to this Alertmanager (http://host:9093); repeat it for an HA pair.")
    var alertmanager: [String] = []
    @Option(help: "How often firing instances are posted to Alertmanager again.")
    var alertmanagerResendInterval: String = "1m"
    @Option(help: "Headers, Authorization and TLS trust for webhook actions, per URL prefix (a YAML file).")
    var webhookConfig: String?
    @Flag(
        help:
            "Publish each transition as JSON on pipeline/engine/<client-id>/transitions (pipeline-monitor shows them)."
    )
    var announceTransitions = false
    @Option(
        help: "Commands waiting for the broker's acknowledgement at most; past it they are held back, one per topic."
    )
    var maxUnacknowledgedCommands: Int = 4_096
    @Flag(help: "Show every rule instance in Home Assistant (MQTT discovery, a binary_sensor of class problem).")
    var haDiscovery = false
    @Option(help: "Device files or folders: the live page shows their sensors' units where a payload has none.")
    var devices: [String] = []
    @OptionGroup var broker: BrokerOptions
    @OptionGroup(title: "Scale-out (docs/scale-out.md)") var scaleOut: ScaleOutOptions

    func run() async throws {
        let level = logLevel
        WallClock.pinLocalTimeZone()
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "rules-engine")
        let mqtt = try broker.configuration(defaultClientID: "rules-engine-" + ProcessInfo.processInfo.hostName)
        guard let resendMilliseconds = RuleDuration.milliseconds(resendInterval) else {
            throw ValidationError("--resend-interval '\(resendInterval)' is not a duration (e.g. 5s)")
        }
        var configuration = RulesEngineConfiguration(rulesDirectory: rules, stateDirectory: stateDir, mqtt: mqtt)
        configuration.resendIntervalMilliseconds = resendMilliseconds
        configuration.auditFile = audit
        configuration.announcesTransitions = announceTransitions
        guard maxUnacknowledgedCommands >= 1 else {
            throw ValidationError("--max-unacknowledged-commands must be at least 1")
        }
        configuration.maximumUnacknowledgedCommands = maxUnacknowledgedCommands
        let listen = try http.map(Run.hostAndPort)
        let registry = PrometheusCollectorRegistry()
        let metrics: any MetricsFactory =
            listen == nil ? NOOPMetricsHandler.instance : EngineHTTPServer.metricsFactory(registry: registry)
        if listen != nil {
            configuration.metrics = EngineMetrics(factory: metrics)
            configuration.liveFeed = LiveFeed(
                units: devices.isEmpty ? [:] : SensorUnits.byTopic(try DeviceFiles.load(devices))
            )
        }
        let integrations = try Integrations(self, engineAddress: listen, metrics: metrics, logger: logger)
        integrations.configure(&configuration)
        let readiness = Readiness(parts: listen == nil ? 1 : 2) {
            print("ready")
            fflush(nil)
        }
        if scaleOut.isEnabled {
            return try await runPartitioned(configuration, integrations: integrations, logger: logger)
        }
        let engine: RulesEngineService
        do {
            engine = try RulesEngineService(configuration: configuration, logger: logger, onReady: readiness.arrive)
        } catch let error as RuleLoadError {
            for diagnostic in error.diagnostics { FileHandleOutput.standardError.write("\(diagnostic)\n") }
            throw ExitCode.failure
        }
        // Shut down in reverse order: the engine finishes its actions before the webhooks' HTTP client stops.
        var services: [any Service] = [engine.client, integrations.webhooks, engine]
        services += integrations.services(following: engine)
        if let listen {
            services.append(
                EngineHTTPServer.make(
                    engine: engine,
                    registry: registry,
                    host: listen.host,
                    port: listen.port,
                    logger: logger,
                    onRunning: readiness.arrive
                )
            )
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}

extension Run {
    /// `--nats`: the partitioned engine, its MQTT client for commands, and the webhooks.
    func runPartitioned(
        _ configuration: RulesEngineConfiguration,
        integrations: Integrations,
        logger: Logger
    ) async throws {
        let partitioned = try scaleOut.configuration(for: self)
        var configuration = configuration
        configuration.mqtt.clientID = broker.clientID ?? "rules-engine-\(partitioned.engineID)"
        let engine: PartitionedEngineService
        do {
            engine = try PartitionedEngineService(engine: configuration, partitioned: partitioned, logger: logger) {
                print("ready")
                fflush(nil)
            }
        } catch let error as RuleLoadError {
            for diagnostic in error.diagnostics { FileHandleOutput.standardError.write("\(diagnostic)\n") }
            throw ExitCode.failure
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [engine.client, integrations.webhooks, engine],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    static func hostAndPort(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port), colon > text.startIndex
        else { throw ValidationError("--http '\(text)' is not HOST:PORT (e.g. 127.0.0.1:9464)") }
        return (String(text[..<colon]), port)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
