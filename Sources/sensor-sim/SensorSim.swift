import ArgumentParser
import CommandLineOptions
import FileFormats
import Foundation
import InputFiles
import Logging
import MQTT
import RuleTools
import Rules
import ServiceLifecycle
import ServiceSupport
import Simulation
import SimulatorService
import UnixSignals

@main
struct SensorSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensor-sim",
        abstract: "Simulated sensors and actuators over MQTT.",
        version: PackageVersion.text,
        subcommands: [RunDevices.self, CheckDevices.self, ReplayRecording.self]
    )
}

struct RunDevices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the devices of device files (prints 'ready' once connected)."
    )

    @Argument(help: "Device files or folders.") var files: [String]
    @Option(help: "Stop after this long (wall clock), e.g. 30s; default: until SIGINT/SIGTERM.") var duration: String?
    @Option(help: "Random seed: the same seed gives the same readings.") var seed: UInt64 = 1
    @Option(help: "Simulated time runs this many times faster.") var speed: Double = 1
    @Option(help: "Run N copies of every device, ids suffixed -1 … -N.") var replicas: Int = 1
    @Option(help: "Readings per second per sensor, overriding the files' intervals (load tests).") var rate: Double?
    @Option(help: "QoS of readings (0 or 1).") var qos: Int = 0
    @Option(help: "Log level.") var logLevel: String = "warning"
    @Flag(help: "Publish Home Assistant MQTT discovery configs (retained, under homeassistant/) for every device.")
    var haDiscovery = false
    @OptionGroup var broker: BrokerOptions

    func validate() throws {
        try SimulatorOptions.checkSpeed(speed)
        if let rate, !(rate > 0 && rate <= 1000) {
            throw ValidationError("--rate must be above 0 and at most 1000 readings per second (got \(rate))")
        }
        guard qos == 0 || qos == 1 else { throw ValidationError("--qos must be 0 or 1 (got \(qos))") }
        guard (1...100_000).contains(replicas) else {
            throw ValidationError("--replicas must be 1 to 100000 (got \(replicas))")
        }
        _ = try SimulatorOptions.logLevel(logLevel)
        if let duration, RuleDuration.milliseconds(duration) == nil {
            throw ValidationError("--duration '\(duration)' is not a duration (e.g. 30s)")
        }
    }

    func run() async throws {
        bootstrapLogging(try SimulatorOptions.logLevel(logLevel))
        let logger = Logger(label: "sensor-sim")
        let devices: [Device]
        do {
            devices = try DeviceFiles.load(files, replicas: replicas)
        } catch let error as DeviceLoadError {
            for diagnostic in error.diagnostics { FileHandleOutput.standardError.write("\(diagnostic)\n") }
            throw ExitCode.failure
        }
        let wallDuration = duration.flatMap(RuleDuration.milliseconds).map { Duration.milliseconds($0) }
        let simulator = try SimulatorService(
            devices: devices,
            mqtt: try broker.configuration(defaultClientID: "sensor-sim-" + ProcessInfo.processInfo.hostName),
            seed: seed,
            speed: speed,
            interval: rate.map { max(1, Int64(1000 / $0)) },
            qos: qos == 1 ? .atLeastOnce : .atMostOnce,
            duration: wallDuration,
            homeAssistantDiscovery: haDiscovery,
            logger: logger,
            onReady: {
                print("ready")
                fflush(nil)
            }
        )
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: simulator.client),
                    .init(service: simulator, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        FileHandleOutput.standardError.write("published \(simulator.publishedCount) readings\n")
    }
}

struct CheckDevices: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate device files or folders without connecting; every problem as FILE:LINE:COL."
    )

    @Argument(help: "Device files or folders.") var paths: [String]

    func run() throws {
        let tools = OfflineTools(
            standardOutput: { print($0) },
            standardError: { FileHandleOutput.standardError.write($0 + "\n") }
        )
        let code = tools.checkDevices(paths)
        if code != 0 { throw ExitCode(code) }
    }
}

struct ReplayRecording: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Publish recorded readings (JSON lines or CSV ts,topic,payload) with their original timing."
    )

    @Argument(help: "READINGS.jsonl or READINGS.csv") var file: String
    @Option(help: "Play this many times faster.") var speed: Double = 1
    @Option(help: "QoS (0, 1 or 2).") var qos: Int = 1
    @OptionGroup var broker: BrokerOptions

    func validate() throws {
        try SimulatorOptions.checkSpeed(speed)
        guard (0...2).contains(qos) else { throw ValidationError("--qos must be 0, 1 or 2 (got \(qos))") }
    }

    func run() async throws {
        bootstrapLogging(.warning)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let readings = try RecordingPublisher.readings(from: text, path: file)
        let client = try MQTTClient(
            configuration: try broker.configuration(
                defaultClientID: "sensor-sim-replay-" + ProcessInfo.processInfo.hostName
            )
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            try await client.waitUntilConnected()
            print("ready")
            fflush(nil)
            try await RecordingPublisher.publish(
                readings,
                with: client,
                speed: speed,
                qos: MQTTQoS(rawValue: qos)!
            )
            group.cancelAll()
        }
        FileHandleOutput.standardError.write("published \(readings.count) readings\n")
    }
}

/// Checks shared by `run` and `replay`.
enum SimulatorOptions {
    static func checkSpeed(_ speed: Double) throws {
        guard speed > 0 && speed <= 100_000 else {
            throw ValidationError("--speed must be above 0 and at most 100000 (got \(speed))")
        }
    }

    static func logLevel(_ text: String) throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: text) else {
            let names = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("--log-level '\(text)' is not one of \(names)")
        }
        return level
    }
}

func bootstrapLogging(_ logLevel: Logger.Level) {
    WallClock.pinLocalTimeZone()
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = logLevel
        return handler
    }
}
