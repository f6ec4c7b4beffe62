import Foundation
import MQTT
import MQTTTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// An actuator's process (`sensor-sim`) killed with -9 while a rule wants the actuator on: its `offline`
/// will must be seen, and when it comes back (reporting its initial `off`) the engine must send `on` again.
func runActuatorRestarts(count: Int) async throws -> FaultRow {
    let broker = try await TestBroker()
    let directory = try TestBroker.makeDirectory()
    let rulesDirectory = directory + "/rules"
    try FileManager.default.createDirectory(atPath: rulesDirectory, withIntermediateDirectories: true)
    try """
    rules:
      - id: soak-cooling
        topic: sensors/{device}/temperature
        above: 30
        on_fire:
          - publish: {topic: "actuators/{device}/cooling/set", payload: {state: "on"}}
        on_clear:
          - publish: {topic: "actuators/{device}/cooling/set", payload: {state: "off"}}

    """.write(toFile: rulesDirectory + "/rules.yaml", atomically: true, encoding: .utf8)
    try """
    devices:
      - id: soak-rack
        sensors:
          - name: temperature
            unit: "°C"
            interval: 1s
            signal: {model: constant, value: 35}
        actuators:
          - name: cooling
            initial: "off"

    """.write(toFile: directory + "/devices.yaml", atomically: true, encoding: .utf8)

    let watcher = try MQTTClient(configuration: MQTTConfiguration(broker: broker.url, clientID: "soak-watcher"))
    let inbox = MessageInbox(watcher)
    let watching = Task { try await watcher.run() }
    defer { watching.cancel() }
    try await watcher.waitUntilConnected()
    let statusTopic = "pipeline/sim/soak-sim/status"
    let stateTopic = "actuators/soak-rack/cooling/state"
    try await watcher.subscribe(to: [statusTopic, stateTopic])

    let engine = try ChildProcess(
        builtProductPath("rules-engine"),
        [
            "run", "--rules", rulesDirectory, "--broker", broker.url.description, "--client-id", "soak-actuator-engine",
            "--resend-interval", "1s",
        ]
    )
    try await engine.waitForLine("ready")
    let simulatorArguments = [
        "run", directory + "/devices.yaml", "--broker", broker.url.description, "--client-id", "soak-sim",
    ]
    var simulator = try ChildProcess(builtProductPath("sensor-sim"), simulatorArguments)
    try await simulator.waitForLine("ready")
    func isOn(_ message: MQTTMessage) -> Bool {
        message.topic == stateTopic && message.payloadString.contains("\"state\":\"on\"")
    }
    _ = try await inbox.first(timeout: .seconds(30), where: isOn)

    var willTimes: [Double] = []
    var recoveries: [Double] = []
    for _ in 0..<count {
        let killed = ContinuousClock.now
        simulator.signal(SIGKILL)
        _ = await simulator.waitForExit()
        _ = try await inbox.first(timeout: .seconds(30)) { $0.topic == statusTopic && $0.payloadString == "offline" }
        willTimes.append((ContinuousClock.now - killed).milliseconds)
        let restarted = ContinuousClock.now
        simulator = try ChildProcess(builtProductPath("sensor-sim"), simulatorArguments)
        try await simulator.waitForLine("ready")
        _ = try await inbox.first(timeout: .seconds(30)) {
            $0.topic == stateTopic && $0.payloadString.contains("\"state\":\"off\"")
        }
        _ = try await inbox.first(timeout: .seconds(30), where: isOn)
        recoveries.append((ContinuousClock.now - restarted).milliseconds)
    }
    simulator.signal(SIGTERM)
    _ = await simulator.waitForExit()
    engine.signal(SIGTERM)
    let exitStatus = await engine.waitForExit()
    broker.stop()
    return FaultRow(
        fault: "actuator kill -9",
        injected: count,
        lost: nil,
        duplicated: nil,
        recoveries: recoveries,
        detail:
            "offline will seen \(willTimes.count)/\(count), in \(FaultRow.summary(willTimes)); recovered-in = restart to the actuator on again (it starts off; the engine re-sends)",
        passed: willTimes.count == count && recoveries.count == count && exitStatus == 0
    )
}
