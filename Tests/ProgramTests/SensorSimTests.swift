import Foundation
import MQTT
import MQTTTestSupport
import Synchronization
import Testing

/// `sensor-sim` through a real broker, alone and in a closed loop with the real engine.
@Suite("sensor-sim, live")
struct SensorSimTests {
    static var packageRoot: String { RulesEngineCommandTests.packageRoot }

    func listen(
        _ broker: TestBroker,
        _ filters: [String],
        name: String
    ) async throws -> (MQTTClient, MessageInbox, Task<Void, any Error>) {
        var configuration = MQTTConfiguration(broker: broker.url, clientID: uniqueTopicPrefix(name))
        configuration.receiveBufferCapacity = 100_000
        let client = try MQTTClient(configuration: configuration)
        let inbox = MessageInbox(client)
        let task = Task { try await client.run() }
        try await withTimeout(.seconds(20), "listener connects") { try await client.waitUntilConnected() }
        try await client.subscribe(to: filters)
        return (client, inbox, task)
    }

    @Test func theServerRoomCyclesItsCoolingWithTheRealEngine() async throws {
        let broker = try await TestBroker()
        let (_, inbox, listener) = try await listen(
            broker,
            ["sensors/rack-a1/temperature", "actuators/rack-a1/cooling/set"],
            name: "loop"
        )
        defer { listener.cancel() }
        let engine = try ChildProcess(
            builtProductPath("rules-engine"),
            [
                "run", "--rules", Self.packageRoot + "/rules", "--broker", broker.url.description, "--client-id",
                uniqueTopicPrefix("loop-engine"),
            ]
        )
        try await engine.waitForLine("ready")
        let simulator = try ChildProcess(
            builtProductPath("sensor-sim"),
            [
                "run", Self.packageRoot + "/Devices/server-room.yaml", "--broker", broker.url.description, "--speed",
                "20", "--seed", "3",
            ]
        )
        try await simulator.waitForLine("ready")
        var commands: [String] = []
        var temperaturesWhileCooled: [Double] = []
        while commands != ["on", "off"] {
            let message = try await inbox.next(timeout: .seconds(60))
            if message.topic.hasSuffix("/set") {
                commands.append(message.payloadString.contains("\"on\"") ? "on" : "off")
            } else if commands == ["on"], let value = Self.value(message.payloadString) {
                temperaturesWhileCooled.append(value)
            }
        }
        // Cooling pulled the rack down and it stayed within its band while cooled.
        #expect(temperaturesWhileCooled.contains { $0 <= 28 })
        #expect(temperaturesWhileCooled.allSatisfy { (22...33).contains($0) }, "\(temperaturesWhileCooled)")
        simulator.signal(SIGTERM)
        engine.signal(SIGTERM)
        #expect(await simulator.waitForExit() == 0)
        #expect(await engine.waitForExit() == 0)
    }

    @Test func replicasPublishOnDistinctDevices() async throws {
        let broker = try await TestBroker()
        let (_, inbox, listener) = try await listen(broker, ["sensors/+/temperature"], name: "replicas")
        defer { listener.cancel() }
        let simulator = try ChildProcess(
            builtProductPath("sensor-sim"),
            [
                "run", Self.packageRoot + "/Devices/server-room.yaml", "--broker", broker.url.description, "--replicas",
                "500",
                "--rate", "2", "--qos", "1",
            ]
        )
        try await simulator.waitForLine("ready")
        var devices = Set<String>()
        while devices.count < 1000 {
            let message = try await inbox.next(timeout: .seconds(30))
            devices.insert(String(message.topic.split(separator: "/")[1]))
        }
        #expect(devices.contains("rack-a1-500") && devices.contains("rack-a2-1"))
        simulator.signal(SIGTERM)
        #expect(await simulator.waitForExit() == 0)
    }

    @Test func replayPublishesARecordingInOrderWithItsTiming() async throws {
        let broker = try await TestBroker()
        // Arrival times are taken in libmosquitto's callback: a test process busy with other tests would
        // otherwise see the messages late and together.
        let arrivals = Mutex<[(topic: String, at: ContinuousClock.Instant)]>([])
        let listener = try MQTTClient(
            configuration: MQTTConfiguration(broker: broker.url, clientID: uniqueTopicPrefix("replay"))
        ) { message in arrivals.withLock { $0.append((message.topic, ContinuousClock.now)) } }
        let running = Task { try await listener.run() }
        defer { running.cancel() }
        try await withTimeout(.seconds(20), "listener connects") { try await listener.waitUntilConnected() }
        try await listener.subscribe(to: ["replay/#"])
        let directory = try TestBroker.makeDirectory()
        let recording = (0..<5).map {
            #"{"ts": \#(1_000_000 + $0 * 400), "topic": "replay/s\#($0)", "payload": {"value": \#($0)}}"#
        }
        try recording.joined(separator: "\n").write(toFile: directory + "/r.jsonl", atomically: true, encoding: .utf8)
        let replay = try ChildProcess(
            builtProductPath("sensor-sim"),
            ["replay", directory + "/r.jsonl", "--broker", broker.url.description, "--speed", "2"]
        )
        #expect(await replay.waitForExit() == 0)
        try await withTimeout(.seconds(20), "five messages") {
            while arrivals.withLock({ $0.count }) < 5 { try await Task.sleep(for: .milliseconds(20)) }
        }
        let received = arrivals.withLock { $0 }
        #expect(received.map(\.topic) == (0..<5).map { "replay/s\($0)" })
        // 400 ms apart in the recording, played twice as fast: the last one comes about 800 ms after the
        // first (a burst would take a few ms). The first publish can be late on a busy machine and the
        // rest catch up with the schedule, so the lower bound leaves room.
        let spread = received[4].at - received[0].at
        #expect(spread >= .milliseconds(300) && spread < .seconds(3), "\(spread)")
    }

    /// `--duration 1s` with no broker listening ran for over ten minutes, then said "published 0 readings" and
    /// exited 0. The duration bounds the whole run, and a run that never reached its broker fails and says so.
    @Test func durationBoundsTheRunWhenTheBrokerIsDown() async throws {
        let port = try TestBroker.freePort()
        let started = ContinuousClock.now
        let simulator = try ChildProcess(
            builtProductPath("sensor-sim"),
            [
                "run", Self.packageRoot + "/Devices/server-room.yaml", "--duration", "1s", "--broker",
                "mqtt://127.0.0.1:\(port)",
            ]
        )
        let status = await simulator.waitForExit(killingAfter: .seconds(60))
        let elapsed = ContinuousClock.now - started
        // About 1 s alone; a full test run on two cores can take several seconds to start a process.
        #expect(elapsed < .seconds(30), "\(elapsed)")
        #expect(status == 1, "\(simulator.standardError)")
        #expect(
            simulator.standardError.contains(
                "the broker at mqtt://127.0.0.1:\(port) was not reached within --duration 1s"
            ),
            "\(simulator.standardError)"
        )
    }

    /// A CSV recording with the times `mosquitto_sub -F %J` writes (six fraction digits): it used to die with
    /// SIGILL. A bad row is named by its line in the file, the header and blank lines counted.
    @Test func replayTakesACSVWithMicrosecondTimes() async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("csv")
        let listener = try MQTTClient(configuration: MQTTConfiguration(broker: broker.url, clientID: prefix))
        let inbox = MessageInbox(listener)
        let running = Task { try await listener.run() }
        defer { running.cancel() }
        try await withTimeout(.seconds(20), "listener connects") { try await listener.waitUntilConnected() }
        try await listener.subscribe(to: ["\(prefix)/#"])
        let directory = try TestBroker.makeDirectory()
        let csv = """
            ts,topic,payload
            2026-12-07T23:15:58.379117Z,\(prefix)/s0,{"value": 1}

            2026-12-07T23:15:58.479117+00:00,\(prefix)/s1,2
            """
        try csv.write(toFile: directory + "/r.csv", atomically: true, encoding: .utf8)
        let replay = try ChildProcess(
            builtProductPath("sensor-sim"),
            ["replay", directory + "/r.csv", "--broker", broker.url.description]
        )
        #expect(await replay.waitForExit(killingAfter: .seconds(30)) == 0, "\(replay.standardError)")
        #expect(try await inbox.next(timeout: .seconds(20)).topic == "\(prefix)/s0")
        #expect(try await inbox.next(timeout: .seconds(20)).payloadString == "2")
        try (csv + "\n2026-12-07T23:15:58.5Z\n").write(toFile: directory + "/r.csv", atomically: true, encoding: .utf8)
        let bad = try ChildProcess(
            builtProductPath("sensor-sim"),
            ["replay", directory + "/r.csv", "--broker", broker.url.description]
        )
        #expect(await bad.waitForExit(killingAfter: .seconds(30)) != 0)
        #expect(
            bad.standardError.contains("\(directory)/r.csv:5:1: error: expected ts,topic,payload"),
            "\(bad.standardError)"
        )
    }

    @Test func homeAssistantDiscoveryIsRetainedAndActuatorsTakeHomeAssistantCommands() async throws {
        let broker = try await TestBroker()
        let simulator = try ChildProcess(
            builtProductPath("sensor-sim"),
            [
                "run", Self.packageRoot + "/Devices/server-room.yaml", "--broker", broker.url.description,
                "--ha-discovery", "--client-id", "ha-sim",
            ]
        )
        try await simulator.waitForLine("ready")
        // Subscribed after the simulator published: the configs are retained, as Home Assistant needs.
        let (client, inbox, listener) = try await listen(
            broker,
            ["homeassistant/#", "actuators/rack-a1/cooling/state"],
            name: "ha"
        )
        defer { listener.cancel() }
        var configs: [String: String] = [:]
        while configs.count < 4 {
            let message = try await inbox.next()
            if message.topic.hasPrefix("homeassistant/") { configs[message.topic] = message.payloadString }
        }
        #expect(
            Set(configs.keys) == [
                "homeassistant/sensor/rack-a1/temperature/config", "homeassistant/sensor/rack-a2/temperature/config",
                "homeassistant/switch/rack-a1/cooling/config", "homeassistant/switch/rack-a2/cooling/config",
            ]
        )
        let sensor = configs["homeassistant/sensor/rack-a1/temperature/config"] ?? ""
        #expect(sensor.contains("\"state_topic\":\"sensors/rack-a1/temperature\""))
        #expect(sensor.contains("\"device_class\":\"temperature\""))
        #expect(sensor.contains("\"availability_topic\":\"pipeline/sim/ha-sim/status\""))
        // Home Assistant's switch sends its default payload, `ON`.
        try await client.publish("ON", to: "actuators/rack-a1/cooling/set", qos: .atLeastOnce)
        _ = try await inbox.first {
            $0.topic == "actuators/rack-a1/cooling/state" && $0.payloadString.contains("\"on\"")
        }
        simulator.signal(SIGTERM)
        #expect(await simulator.waitForExit() == 0)
    }

    static func value(_ payload: String) -> Double? {
        guard let data = payload.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object["value"] as? Double
    }
}

/// Numbers and names from the command line are checked before anything starts: a clear error and exit
/// status 64, never a trap (`--rate 0` died with SIGILL), a schedule that never ends (`--rate 5000`), or
/// a silent default (`--qos 7`, `--log-level loud`).
@Suite("sensor-sim options")
struct SensorSimOptionTests {
    @Test(arguments: [
        (["--rate", "0"], "--rate must be above 0 and at most 1000 readings per second"),
        (["--rate=-1"], "--rate must be above 0 and at most 1000 readings per second"),
        (["--rate", "5000"], "--rate must be above 0 and at most 1000 readings per second"),
        (["--rate", "nan"], "--rate must be above 0 and at most 1000 readings per second"),
        (["--speed", "0"], "--speed must be above 0 and at most 100000"),
        (["--speed", "inf"], "--speed must be above 0 and at most 100000"),
        (["--qos", "2"], "--qos must be 0 or 1"),
        (["--replicas", "0"], "--replicas must be 1 to 100000"),
        (
            ["--log-level", "loud"],
            "--log-level 'loud' is not one of trace, debug, info, notice, warning, error, critical"
        ),
        (["--duration", "soon"], "--duration 'soon' is not a duration"),
    ])
    func rejected(arguments: [String], message: String) async throws {
        let devices = RulesEngineCommandTests.packageRoot + "/Devices/server-room.yaml"
        let simulator = try ChildProcess(
            builtProductPath("sensor-sim"),
            ["run", devices, "--broker", "mqtt://127.0.0.1:1"] + arguments
        )
        let status = await simulator.waitForExit(killingAfter: .seconds(30))
        #expect(status == 64, "\(simulator.standardError)")
        #expect(simulator.standardError.contains(message), "\(simulator.standardError)")
    }

    @Test(arguments: [
        (["--qos", "3"], "--qos must be 0, 1 or 2"),
        (["--speed=-2"], "--speed must be above 0 and at most 100000"),
    ])
    func replayRejected(arguments: [String], message: String) async throws {
        let simulator = try ChildProcess(
            builtProductPath("sensor-sim"),
            [
                "replay", RulesEngineCommandTests.packageRoot + "/examples/readings.jsonl", "--broker",
                "mqtt://127.0.0.1:1",
            ]
                + arguments
        )
        let status = await simulator.waitForExit(killingAfter: .seconds(30))
        #expect(status == 64, "\(simulator.standardError)")
        #expect(simulator.standardError.contains(message), "\(simulator.standardError)")
    }
}

/// Device files checked offline, with no broker: `sensor-sim check` and `rules-engine check` on device files.
@Suite("sensor-sim check and device files offline")
struct DeviceFileCheckTests {
    static let broken = """
        devices:
          - id: room-1
            sensors:
              - {name: door, signal: {model: stepz}, noise: -1}
            actuators:
              - {name: fan, lag: 2 mins, effects: [{sensor: temp, rate: -1}]}
        """

    func check(_ executable: String, _ arguments: [String]) async throws -> (Int32, String, String) {
        let process = try ChildProcess(builtProductPath(executable), arguments)
        let status = await process.waitForExitAndOutput()
        return (status, process.output.joined(separator: "\n"), process.standardError)
    }

    @Test(arguments: ["sensor-sim", "rules-engine"])
    func theShippedDevicesAreValid(executable: String) async throws {
        let (status, _, error) = try await check(executable, ["check", SensorSimTests.packageRoot + "/Devices"])
        #expect(status == 0, "\(error)")
        #expect(error.contains("device(s) valid"), "\(error)")
    }

    @Test(arguments: ["sensor-sim", "rules-engine"])
    func everyProblemOfABrokenFileAtOnce(executable: String) async throws {
        let directory = try TestBroker.makeDirectory()
        try Self.broken.write(toFile: directory + "/room.yaml", atomically: true, encoding: .utf8)
        let (status, _, error) = try await check(executable, ["check", directory + "/room.yaml"])
        #expect(status == 1)
        let lines = error.split(separator: "\n").map(String.init)
        #expect(
            lines == [
                "\(directory)/room.yaml:4:38: error: unknown model 'stepz': use constant, random_walk, sine, daily or steps",
                "\(directory)/room.yaml:4:53: error: 'noise' must be 0 or more",
                "\(directory)/room.yaml:6:26: error: 'lag' '2 mins' is not a duration (use e.g. 500ms, 10s, 5m, 1h, 1h30m)",
                "\(directory)/room.yaml:6:53: error: effect on sensor 'temp', which this device does not have (it has [\"door\"])",
            ],
            "\(error)"
        )
    }
}
