import ArgumentParser
import CommandLineOptions
import EngineAPIClient
import FileFormats
import Foundation
import InputFiles
import MQTT
import PipelineMonitor
import ServiceSupport
import Simulation
import Synchronization

/// A live terminal view of a pipeline: sensors, rule instances, actuators and the last commands,
/// refreshed in place until Ctrl-C (which quits the monitor only).
@main
struct PipelineMonitorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline-monitor",
        abstract: "Show sensors, rule instances, actuators and commands live in the terminal.",
        version: PackageVersion.text,
    )

    @Option(help: "Redraw every this many milliseconds.") var refresh: Int = 500
    @Option(help: "A line shown under the title (the demo puts the live page's address there).") var note: String?
    @Option(help: "A running engine's --http address: list every rule instance from it (pending ones too).")
    var engine: String?
    @Option(help: "Device files or folders: their sensors' units are shown where a payload has none.")
    var devices: [String] = []
    @OptionGroup var broker: BrokerOptions

    func run() async throws {
        let configuration = try broker.configuration(defaultClientID: "pipeline-monitor-\(getpid())")
        let client = try MQTTClient(configuration: configuration)
        let monitor = SharedMonitor(
            PipelineMonitor(units: devices.isEmpty ? [:] : SensorUnits.byTopic(try DeviceFiles.load(devices)))
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            group.addTask {
                for await message in client.messages {
                    monitor.state.withLock { $0.receive(message, at: WallClock.nowMilliseconds()) }
                }
            }
            if let engine {
                let base = engine.hasPrefix("http") ? engine : "http://" + engine
                guard URL(string: base + "/api/instances") != nil else {
                    throw ValidationError("--engine '\(engine)' is not HOST:PORT")
                }
                group.addTask {
                    while !Task.isCancelled {
                        // An engine that does not answer leaves the last list on screen; the next poll tries again.
                        if let reports = try? await EngineAPIClient.json(at: base + "/api/instances") {
                            monitor.state.withLock { $0.receiveInstances(reports, at: WallClock.nowMilliseconds()) }
                        }
                        if let commands = try? await EngineAPIClient.json(at: base + "/api/commands") {
                            monitor.state.withLock { $0.receiveCommands(commands) }
                        }
                        try await Task.sleep(for: .seconds(1))
                    }
                }
            }
            try await client.waitUntilConnected()
            try await client.subscribe(to: PipelineMonitor.filters, qos: .atMostOnce)
            while !Task.isCancelled {
                let lines = monitor.state.withLock { $0.render(broker: configuration.broker.description, note: note) }
                // Home the cursor, draw, clear what is left of the previous frame.
                FileHandleOutput.standardOutput.write(
                    "\u{1B}[H" + lines.map { $0 + "\u{1B}[K" }.joined(separator: "\n") + "\n\u{1B}[J"
                )
                try await Task.sleep(for: .milliseconds(refresh))
            }
        }
    }
}

final class SharedMonitor: Sendable {
    let state: Mutex<PipelineMonitor>
    init(_ monitor: PipelineMonitor) { state = Mutex(monitor) }
}
