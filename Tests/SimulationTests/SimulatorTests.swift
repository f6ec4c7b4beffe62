import FileFormats
import Foundation
import Simulation
import Testing

func devices(_ text: String, replicas: Int = 1) throws -> [Device] {
    try DeviceLoader.load([(path: "devices.yaml", text: text)], replicas: replicas)
}

func oneSensor(_ signal: String, extra: String = "") -> String {
    """
    devices:
      - id: d
        sensors:
          - name: s
            interval: 1s
            signal: \(signal)
    \(extra.split(separator: "\n").map { "        \($0)" }.joined(separator: "\n"))
    """
}

/// Runs a world for `seconds` of simulated time and returns the values read.
func values(_ devices: [Device], seconds: Int, seed: UInt64 = 7) -> [Double] {
    var world = Simulator(devices: devices, seed: seed, start: 0)
    var readings: [SimulatedReading] = []
    var changes: [ActuatorStateChange] = []
    world.advance(to: Int64(seconds) * 1000, readings: &readings, changes: &changes)
    return readings.map(\.value)
}

@Suite("Simulated signals")
struct SignalTests {
    struct Model: Sendable, CustomTestStringConvertible {
        var name: String
        var signal: String
        var extra: String = ""
        var check: @Sendable ([Double]) -> Bool
        var testDescription: String { name }
    }

    @Test(arguments: [
        Model(name: "constant", signal: "{model: constant, value: 21}") { $0.allSatisfy { $0 == 21 } },
        Model(
            name: "random walk stays in bounds",
            signal: "{model: random_walk, start: 20, step: 5}",
            extra: "bounds: [10, 30]"
        ) {
            $0.allSatisfy { (10...30).contains($0) } && Set($0).count > 10
        },
        Model(name: "random walk drifts", signal: "{model: random_walk, start: 0, step: 0, drift: 1}") {
            $0.last == Double($0.count)
        },
        Model(name: "sine spans mean ± amplitude", signal: "{model: sine, mean: 10, amplitude: 5, period: 60s}") {
            abs(($0.max() ?? 0) - 15) < 0.1 && abs(($0.min() ?? 0) - 5) < 0.1
        },
        Model(
            name: "steps change at their offsets",
            signal: "{model: steps, steps: [{at: 0s, value: 1}, {at: 30s, value: 2}]}"
        ) {
            $0.prefix(29).allSatisfy { $0 == 1 } && $0.suffix(30).allSatisfy { $0 == 2 }
        },
        Model(name: "daily peaks at its hour", signal: "{model: daily, mean: 20, amplitude: 5, peak_hour: 0}") {
            abs(($0.first ?? 0) - 25) < 0.1
        },
        Model(name: "noise averages out", signal: "{model: constant, value: 50}", extra: "noise: 1") {
            abs($0.reduce(0, +) / Double($0.count) - 50) < 0.5 && Set($0).count > 10
        },
        Model(name: "spikes", signal: "{model: constant, value: 0}", extra: "spikes: {probability: 0.2, size: 10}") {
            $0.contains { abs($0) == 10 } && $0.contains(0)
        },
        Model(
            name: "dropouts leave gaps",
            signal: "{model: constant, value: 1}",
            extra: "dropouts: {probability: 0.1, duration: 10s}"
        ) {
            $0.count < 100
        },
    ])
    func model(_ model: Model) throws {
        let read = values(try devices(oneSensor(model.signal, extra: model.extra)), seconds: 100)
        #expect(model.check(read), "\(read.prefix(20))")
    }

    @Test func theSameSeedGivesTheSameReadings() throws {
        let world = try devices(
            oneSensor(
                "{model: random_walk, start: 0, step: 1}",
                extra: "noise: 0.5\nspikes: {probability: 0.1, size: 3}"
            )
        )
        #expect(values(world, seconds: 200, seed: 1) == values(world, seconds: 200, seed: 1))
        #expect(values(world, seconds: 200, seed: 1) != values(world, seconds: 200, seed: 2))
    }

    @Test(arguments: [
        ("json", #"{"value":21,"unit":"C","ts":1000,"seq":1}"#),
        ("number", "21"),
        ("{key: temp_c}", #"{"temp_c":21}"#),
    ])
    func payloadShapes(shape: String, first: String) throws {
        let text = oneSensor("{model: constant, value: 21}", extra: "unit: C\npayload: \(shape)")
        var world = Simulator(devices: try devices(text), seed: 1, start: 0, interval: 1000)
        var readings: [SimulatedReading] = []
        var changes: [ActuatorStateChange] = []
        world.advance(to: 2999, readings: &readings, changes: &changes)
        let payload = String(decoding: readings[0].payload, as: UTF8.self)
        #expect(payload == first.replacingOccurrences(of: "1000", with: "\(readings[0].timestamp)"))
    }
}

@Suite("Simulated actuators and the world")
struct WorldTests {
    static let rack = """
        devices:
          - id: rack
            sensors:
              - {name: temperature, interval: 1s, signal: {model: constant, value: 30}}
            actuators:
              - name: cooling
                effects: [{sensor: temperature, when: "on", rate: -1, limit: 5, recover: 0.5}]
        """

    @Test func coolingPullsTheTemperatureDownAndItRecovers() throws {
        var world = Simulator(devices: try devices(Self.rack), seed: 1, start: 0)
        #expect(world.value(device: "rack", sensor: "temperature", at: 0) == 30)
        let on = world.command(topic: "actuators/rack/cooling/set", payload: Array(#"{"state":"on"}"#.utf8), at: 0)
        #expect(on == ActuatorStateChange(topic: "actuators/rack/cooling/state", state: "on", timestamp: 0))
        #expect(world.value(device: "rack", sensor: "temperature", at: 3000) == 27)
        #expect(world.value(device: "rack", sensor: "temperature", at: 20_000) == 25)  // limit 5
        _ = world.command(topic: "actuators/rack/cooling/set", payload: Array("OFF".utf8), at: 20_000)
        #expect(world.value(device: "rack", sensor: "temperature", at: 24_000) == 27)  // recovers 0.5/s
    }

    @Test func duplicateAndUnknownCommandsChangeNothing() throws {
        var world = Simulator(devices: try devices(Self.rack), seed: 1, start: 0)
        #expect(world.command(topic: "actuators/rack/cooling/set", payload: Array("on".utf8), at: 0) != nil)
        #expect(world.command(topic: "actuators/rack/cooling/set", payload: Array("on".utf8), at: 1) == nil)
        #expect(world.command(topic: "actuators/rack/cooling/set", payload: Array("sideways".utf8), at: 2) == nil)
        #expect(world.command(topic: "actuators/other/cooling/set", payload: Array("off".utf8), at: 3) == nil)
        #expect(world.state(ofCommandTopic: "actuators/rack/cooling/set") == "on")
        #expect(world.actuatorStates.map(\.state) == ["on"])
    }

    @Test func aLaggingActuatorAppliesLater() throws {
        let text = Self.rack.replacingOccurrences(
            of: "      - name: cooling",
            with: "      - name: cooling\n        lag: 2s"
        )
        var world = Simulator(devices: try devices(text), seed: 1, start: 0)
        #expect(world.command(topic: "actuators/rack/cooling/set", payload: Array("on".utf8), at: 0) == nil)
        var readings: [SimulatedReading] = []
        var changes: [ActuatorStateChange] = []
        world.advance(to: 1999, readings: &readings, changes: &changes)
        #expect(changes.isEmpty)
        world.advance(to: 2000, readings: &readings, changes: &changes)
        #expect(changes.map(\.state) == ["on"])
    }

    @Test func anOpenDoorWarmsTheFreezer() throws {
        let text = """
            devices:
              - id: freezer
                sensors:
                  - {name: cabinet, interval: 1s, signal: {model: constant, value: -20}}
                  - name: door
                    interval: 1s
                    signal: {model: steps, steps: [{at: 0s, value: 0}, {at: 10s, value: 1}, {at: 70s, value: 0}]}
                    payload: {states: [closed, open]}
                    effects: [{sensor: cabinet, when: open, rate: 0.1, limit: 5}]
            """
        var world = Simulator(devices: try devices(text), seed: 1, start: 0, interval: 1000)
        var readings: [SimulatedReading] = []
        var changes: [ActuatorStateChange] = []
        world.advance(to: 9_999, readings: &readings, changes: &changes)
        let closed = world.value(device: "freezer", sensor: "cabinet", at: 9_999)
        #expect(closed == -20)
        world.advance(to: 40_999, readings: &readings, changes: &changes)
        let warmed = world.value(device: "freezer", sensor: "cabinet", at: 40_999) ?? 0
        #expect(warmed > -17.5 && warmed < -16.5, "\(warmed)")  // about 30 s open at 0.1 °C/s
        #expect(world.actuatorStates.isEmpty)  // a sensor's effects are not an actuator anyone commands
        // A reading is JSON (the contract): a named state as `{"value": "open", "ts": …, "seq": …}`.
        let door = try #require(readings.last { $0.topic == "sensors/freezer/door" })
        let payload = try #require(JSONValue(parsing: door.payload))
        #expect(payload["value"] == .string("open"))
        #expect(payload["ts"] == .number(Double(door.timestamp)))
        #expect(payload["seq"] != nil)
    }

    @Test func replicasMakeDistinctDevices() throws {
        let world = Simulator(devices: try devices(Self.rack, replicas: 1000), seed: 1, start: 0)
        #expect(world.devices.count == 1000)
        #expect(Set(world.devices.map(\.id)).count == 1000)
        #expect(world.devices.last?.id == "rack-1000")
        #expect(world.commandFilters == ["actuators/+/cooling/set"])
    }
}

@Suite("Device file validation")
struct DeviceLoaderTests {
    @Test(
        arguments: [
            (
                "devices:\n  - id: d\n    sensrs: []\n", 3, 5,
                "unknown key 'sensrs' in a device (did you mean 'sensors'?)"
            ),
            (
                "devices:\n  - id: d\n    sensors:\n      - {name: s, signal: {model: wobble}}\n", 4, 35,
                "unknown model 'wobble'"
            ),
            (
                "devices:\n  - id: d\n    sensors:\n      - {name: s, interval: soon, signal: {model: constant, value: 1}}\n",
                4, 29, "'interval' 'soon' is not a duration"
            ),
            (
                "devices:\n  - id: d\n    sensors:\n      - {name: s, signal: {model: sine, mean: 1}}\n", 4, 27,
                "the sine model needs 'amplitude'"
            ),
            (
                "devices:\n  - id: d\n    sensors:\n      - {name: s, signal: {model: constant, value: 1}, bounds: [5, 1]}\n",
                4, 64, "'bounds' needs low < high"
            ),
            (
                "devices:\n  - id: d\n    sensors:\n      - {name: s, signal: {model: constant, value: 1}, spikes: {probability: 2}}\n",
                4, 78, "a probability must be from 0 to 1"
            ),
            (
                "devices:\n  - id: d\n    actuators:\n      - {name: a, effects: [{sensor: nope, rate: 1}]}\n", 4, 38,
                "effect on sensor 'nope'"
            ),
            ("devices:\n  - id: \"a b\"\n    sensors: []\n", 2, 9, "device id 'a b' may only hold"),
            (
                "devices:\n  - id: d\n    sensors:\n      - {name: s, topic: \"a/+/b\", signal: {model: constant, value: 1}}\n",
                4, 26, "must be a plain topic"
            ),
            (
                "devices:\n  - {id: d, sensors: [{name: s, signal: {model: constant, value: 1}}]}\n  - {id: d, sensors: [{name: s, signal: {model: constant, value: 1}}]}\n",
                3, 5, "duplicate device id 'd'"
            ),
        ] as [(String, Int, Int, String)]
    )
    func reportsProblem(text: String, line: Int, column: Int, message: String) {
        #expect {
            try DeviceLoader.load([(path: "Devices/x.yaml", text: text)])
        } throws: { error in
            guard let error = error as? DeviceLoadError,
                let diagnostic = error.diagnostics.first(where: { $0.message.contains(message) })
            else {
                Issue.record("no '\(message)' in \(error)")
                return false
            }
            #expect(
                diagnostic.location == SourceLocation(file: "Devices/x.yaml", line: line, column: column),
                "\(diagnostic)"
            )
            return true
        }
    }
}

/// Every problem of a device file at once: a sensor whose signal is wrong is still checked for its other keys,
/// the effects of the sensors after it are still read, and an effect that names it is not an error of its own.
@Suite("Device file validation: every problem at once")
struct DeviceLoaderAllProblemsTests {
    @Test func everyProblemIsReportedInOneRun() {
        let text = """
            devices:
              - id: room-1
                sensors:
                  - name: door
                    noise: -1
                    signal: {model: stepz}
                    bounds: [5, 1]
                  - name: temperature
                    interval: 5 seconds
                    signal: {model: random_walk, start: 4}
                    effects: [{sensor: humidity, rate: 1, when: never}]
                  - name: humidity
                    signal: {model: constant, value: 50}
                    effects: [{sensor: nope, rate: 1}]
                actuators:
                  - name: compressor
                    lag: 2 mins
                    effects:
                      - {sensor: door, rate: -0.05}
                      - {sensor: temp, rate: -0.05}
                      - {sensor: temperature, rate: -0.05, when: onn}
            """
        #expect {
            try DeviceLoader.load([(path: "x.yaml", text: text)])
        } throws: { error in
            let lines = (error as? DeviceLoadError)?.diagnostics.map {
                "\($0.location.line):\($0.location.column) \($0.message)"
            }
            #expect(
                lines == [
                    "5:16 'noise' must be 0 or more",
                    "6:25 unknown model 'stepz': use constant, random_walk, sine, daily or steps",
                    "7:17 'bounds' needs low < high",
                    "9:19 'interval' '5 seconds' is not a duration (use e.g. 500ms, 10s, 5m, 1h, 1h30m)",
                    "14:28 effect on sensor 'nope', which this device does not have (it has [\"door\", \"temperature\", \"humidity\"])",
                    "17:14 'lag' '2 mins' is not a duration (use e.g. 500ms, 10s, 5m, 1h, 1h30m)",
                    "20:22 effect on sensor 'temp', which this device does not have (it has [\"door\", \"temperature\", \"humidity\"])",
                    "21:54 effect state 'onn' is not one of [\"off\", \"on\"]",
                ],
                "\(error)"
            )
            return true
        }
    }
}

/// Shared sensor definitions: YAML merge keys (`<<: *anchor`, or a list of anchors) and `x-` extension keys,
/// as docker-compose files use them. Explicit keys win over merged ones; an error in a merged key points at
/// the anchor's text.
@Suite("Device files: merge keys and x- keys")
struct DeviceMergeKeyTests {
    static let text = """
        x-chilled-temperature: &chilled
          name: temperature
          unit: °C
          interval: 10s
          signal: {model: random_walk, start: 3, step: 0.05}
        x-door: &door {name: door, interval: 10s, payload: {states: [closed, open]}, signal: {model: constant, value: 0}}
        devices:
          - id: room-1
            x-note: the north side
            sensors:
              - <<: *chilled
              - <<: [*door]
                interval: 5s
          - id: room-2
            sensors:
              - {<<: *chilled, signal: {model: constant, value: -18}}
        """

    @Test func mergedDefinitionsAreSharedAndExplicitKeysWin() throws {
        let devices = try DeviceLoader.load([(path: "d.yaml", text: Self.text)])
        #expect(devices.map(\.id) == ["room-1", "room-2"])
        #expect(devices[0].sensors.map(\.name) == ["temperature", "door"])
        #expect(devices[0].sensors[0].intervalMilliseconds == 10_000)
        #expect(devices[0].sensors[1].intervalMilliseconds == 5000)
        #expect(devices[1].sensors[0].signal.model == .constant(-18))
    }

    @Test func anErrorInAMergedKeyPointsAtTheAnchor() {
        let broken = Self.text.replacing("interval: 10s\n  signal", with: "interval: soon\n  signal")
        #expect {
            try DeviceLoader.load([(path: "d.yaml", text: broken)])
        } throws: { error in
            let lines = (error as? DeviceLoadError)?.diagnostics.map(\.description) ?? []
            // Two devices merge it: one message, at the anchor's line.
            return lines == [
                "d.yaml:4:13: error: 'interval' 'soon' is not a duration (use e.g. 500ms, 10s, 5m, 1h, 1h30m)"
            ]
        }
    }

    @Test func anUnknownKeyIsStillAnError() {
        #expect(throws: DeviceLoadError.self) {
            try DeviceLoader.load([(path: "d.yaml", text: Self.text.replacing("x-note:", with: "note:"))])
        }
    }
}

/// State names compare without case in device files too (one rule everywhere): `initial: ON` and
/// `when: OPEN` name the declared states, in their declared spelling.
@Suite("Device files: state names")
struct DeviceStateNameTests {
    @Test func initialAndWhenMatchTheDeclaredStatesWithoutCase() throws {
        let devices = try devices(
            """
            devices:
              - id: d
                sensors:
                  - {name: t, interval: 1s, signal: {model: constant, value: 20}}
                actuators:
                  - name: vent
                    states: [closed, open]
                    initial: OPEN
                    effects: [{sensor: t, when: Open, rate: -0.1}]
            """
        )
        let vent = try #require(devices.first?.actuators.first)
        #expect(vent.initialState == "open")
        #expect(vent.effects.first?.state == "open")
    }
}
