import ArgumentParser
import Foundation
import Logging
import MQTT
import PipelineServices
import Rules
import ServiceLifecycle
import Simulation

@main
struct SensorSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensor-sim",
        abstract: "Simulated sensors and actuators over MQTT.",
        subcommands: [RunDevices.self, ReplayRecording.self]
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

    func run() async throws {
        bootstrapLogging(logLevel)
        let logger = Logger(label: "sensor-sim")
        let devices: [Device]
        do {
            devices = try DeviceFiles.load(files, replicas: max(1, replicas))
        } catch let error as DeviceLoadError {
            for diagnostic in error.diagnostics { FileHandleOutput.standardError.write("\(diagnostic)\n") }
            throw ExitCode.failure
        }
        guard speed > 0 else { throw ValidationError("--speed must be above 0") }
        var wallDuration: Duration?
        if let duration {
            guard let milliseconds = RuleDuration.milliseconds(duration) else {
                throw ValidationError("--duration '\(duration)' is not a duration (e.g. 30s)")
            }
            wallDuration = .milliseconds(milliseconds)
        }
        let simulator = try SimulatorService(
            devices: devices,
            mqtt: try broker.configuration(defaultClientID: "sensor-sim-" + ProcessInfo.processInfo.hostName),
            seed: seed,
            speed: speed,
            interval: rate.map { Int64(1000 / $0) },
            qos: MQTTQoS(rawValue: qos) ?? .atMostOnce,
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

struct ReplayRecording: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Publish recorded readings (JSON lines or CSV ts,topic,payload) with their original timing."
    )

    @Argument(help: "READINGS.jsonl or READINGS.csv") var file: String
    @Option(help: "Play this many times faster.") var speed: Double = 1
    @Option(help: "QoS (0, 1 or 2).") var qos: Int = 1
    @OptionGroup var broker: BrokerOptions

    func run() async throws {
        bootstrapLogging("warning")
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
                qos: MQTTQoS(rawValue: qos) ?? .atLeastOnce
            )
            group.cancelAll()
        }
        FileHandleOutput.standardError.write("published \(readings.count) readings\n")
    }
}

func bootstrapLogging(_ level: String) {
    let logLevel = Logger.Level(rawValue: level) ?? .warning
    WallClock.pinLocalTimeZone()
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = logLevel
        return handler
    }
}
