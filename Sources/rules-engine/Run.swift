import ArgumentParser
import Foundation
import Logging
import PipelineServices
import Rules
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
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
    @OptionGroup var broker: BrokerOptions

    func run() async throws {
        let level = logLevel
        WallClock.pinLocalTimeZone()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
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
        let engine: RulesEngineService
        do {
            engine = try RulesEngineService(
                configuration: configuration,
                logger: logger,
                onReady: {
                    print("ready")
                    fflush(nil)
                }
            )
        } catch let error as RuleLoadError {
            for diagnostic in error.diagnostics { FileHandleOutput.standardError.write("\(diagnostic)\n") }
            throw ExitCode.failure
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [engine.client, engine],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
