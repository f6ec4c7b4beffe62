import FileFormats
import HeapModule

#if canImport(Glibc)
import Glibc
#endif

/// A reading a simulated sensor publishes.
public struct SimulatedReading: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var value: Double
    /// Simulated time, Unix ms.
    public var timestamp: Int64
}

/// An actuator's new state, to publish retained on its state topic.
public struct ActuatorStateChange: Sendable, Hashable {
    public var topic: String
    public var state: String
    public var timestamp: Int64

    public init(topic: String, state: String, timestamp: Int64) {
        self.topic = topic
        self.state = state
        self.timestamp = timestamp
    }

    /// `{"state": "on", "ts": …}`
    public var payload: [UInt8] { Array(#"{"state":"\#(state)","ts":\#(timestamp)}"#.utf8) }
}

/// One simulated world: every device of a run, their sensors and actuators, and the effects of the
/// actuators on the sensors. Pure: time is passed in, randomness comes from the seed.
public struct Simulator: Sendable {
    struct SensorState: Sendable {
        var device: Int
        var sensor: Sensor
        var topic: String
        var random: SplitMix64
        var walk: Double
        var sequence: Int64 = 0
        var silentUntil: Int64 = .min
        var nextDue: Int64
        /// How far actuator effects moved the value from its signal.
        var offset: Double = 0
        var offsetUpdatedAt: Int64
        /// The hidden actuator that carries this sensor's own effects, if it has any.
        var drives: Int?
    }

    struct ActuatorState: Sendable {
        var device: Int
        var actuator: Actuator
        var commandTopic: String
        var stateTopic: String
        var state: String
        var random: SplitMix64
        var pending: [(at: Int64, state: String)] = []
        /// The sensor each effect moves (an index into `sensors`).
        var effectSensors: [Int]
        /// Stands for a sensor's own effects: no command topic, its state is the sensor's last reading.
        var hidden = false
    }

    public let devices: [Device]
    public let start: Int64
    private var sensors: [SensorState] = []
    private var actuators: [ActuatorState] = []
    private var actuatorByCommandTopic: [String: Int] = [:]
    private var actuatorsByDevice: [[Int]]
    private var heap = DueHeap()

    /// Sets the world up at `start` (Unix ms). `interval` overrides every sensor's interval (load tests).
    public init(devices: [Device], seed: UInt64, start: Int64, interval: Int64? = nil) {
        self.devices = devices
        self.start = start
        actuatorsByDevice = Array(repeating: [], count: devices.count)
        for (deviceIndex, device) in devices.enumerated() {
            let firstSensor = sensors.count
            for (sensorIndex, sensor) in device.sensors.enumerated() {
                var random = SplitMix64(seed: seed ^ (UInt64(deviceIndex) &* 0x9E37_79B9) ^ (UInt64(sensorIndex) << 48))
                let period = interval ?? sensor.intervalMilliseconds
                // Spread the first readings over one interval so 10,000 devices do not publish at once.
                let first = start + Int64(random.next() % UInt64(max(1, period)))
                var walk = 0.0
                if case .randomWalk(let startValue, _, _) = sensor.signal.model { walk = startValue }
                var state = SensorState(
                    device: deviceIndex,
                    sensor: sensor,
                    topic: sensor.topic.replacingDevice(device.id),
                    random: random,
                    walk: walk,
                    nextDue: first,
                    offsetUpdatedAt: start
                )
                state.sensor.intervalMilliseconds = period
                sensors.append(state)
                heap.push(due: first, index: sensors.count - 1)
            }
            for (actuatorIndex, actuator) in device.actuators.enumerated() {
                let commandTopic = actuator.commandTopic.replacingDevice(device.id)
                actuators.append(
                    ActuatorState(
                        device: deviceIndex,
                        actuator: actuator,
                        commandTopic: commandTopic,
                        stateTopic: actuator.stateTopic.replacingDevice(device.id),
                        state: actuator.initialState,
                        random: SplitMix64(seed: seed ^ 0xA5A5 ^ (UInt64(deviceIndex) << 20) ^ UInt64(actuatorIndex)),
                        effectSensors: actuator.effects.map { effect in
                            firstSensor + (device.sensors.firstIndex { $0.name == effect.sensor } ?? 0)
                        }
                    )
                )
                actuatorByCommandTopic[commandTopic] = actuators.count - 1
                actuatorsByDevice[deviceIndex].append(actuators.count - 1)
            }
            for (sensorIndex, sensor) in device.sensors.enumerated() where !sensor.effects.isEmpty {
                let stand = Actuator(
                    name: sensor.name,
                    commandTopic: "",
                    stateTopic: "",
                    states: [],
                    initialState: "",
                    effects: sensor.effects,
                    lagMilliseconds: 0,
                    failProbability: 0
                )
                actuators.append(
                    ActuatorState(
                        device: deviceIndex,
                        actuator: stand,
                        commandTopic: "",
                        stateTopic: "",
                        state: "",
                        random: SplitMix64(seed: seed),
                        effectSensors: sensor.effects.map { effect in
                            firstSensor + (device.sensors.firstIndex { $0.name == effect.sensor } ?? 0)
                        },
                        hidden: true
                    )
                )
                actuatorsByDevice[deviceIndex].append(actuators.count - 1)
                sensors[firstSensor + sensorIndex].drives = actuators.count - 1
            }
        }
    }

    /// The MQTT filters of every command topic (device ids become `+`).
    public var commandFilters: [String] {
        var filters: [String] = []
        for device in devices {
            for actuator in device.actuators {
                let filter = actuator.commandTopic.replacingDevice("+")
                if !filters.contains(filter) { filters.append(filter) }
            }
        }
        return filters
    }

    /// Every actuator's current state (to publish retained at start).
    public var actuatorStates: [ActuatorStateChange] {
        actuators.filter { !$0.hidden }.map {
            ActuatorStateChange(topic: $0.stateTopic, state: $0.state, timestamp: start)
        }
    }

    /// The time the next reading or delayed command is due.
    public var nextDue: Int64? {
        let pending = actuators.lazy.flatMap(\.pending).map(\.at).min()
        switch (heap.peek, pending) {
        case (let a?, let b?): return min(a, b)
        case (let a?, nil): return a
        case (nil, let b): return b
        }
    }

    /// Produces every reading due up to `time`, in time order, and applies delayed commands.
    public mutating func advance(
        to time: Int64,
        readings: inout [SimulatedReading],
        changes: inout [ActuatorStateChange]
    ) {
        applyPending(upTo: time, into: &changes)
        while let (due, index) = heap.popIfDue(atOrBefore: time) {
            applyPending(upTo: due, into: &changes)
            if let reading = read(sensorAt: index, at: due) { readings.append(reading) }
            sensors[index].nextDue = due + sensors[index].sensor.intervalMilliseconds
            heap.push(due: sensors[index].nextDue, index: index)
        }
    }

    /// Applies a command; returns the state change, or nil when it is not for us, a duplicate, unknown,
    /// lost (the actuator's `fail_probability`), or delayed by `lag` (it comes out of `advance` then).
    public mutating func command(topic: String, payload: [UInt8], at time: Int64) -> ActuatorStateChange? {
        guard let index = actuatorByCommandTopic[topic] else { return nil }
        // The device file's spelling of the state the command names (names compare without case).
        guard let named = FileFormats.ActuatorState.name(in: payload),
            let wanted = actuators[index].actuator.states.first(where: { FileFormats.ActuatorState.same($0, named) })
        else { return nil }
        let failure = actuators[index].actuator.failProbability
        if failure > 0, actuators[index].random.nextUnit() < failure { return nil }
        let lag = actuators[index].actuator.lagMilliseconds
        if lag > 0 {
            actuators[index].pending.append((time + lag, wanted))
            return nil
        }
        return setState(wanted, ofActuator: index, at: time)
    }

    /// The current state of an actuator by its command topic.
    public func state(ofCommandTopic topic: String) -> String? {
        actuatorByCommandTopic[topic].map { actuators[$0].state }
    }

    /// The current value of a sensor (signal plus effects, without noise), for tests and displays.
    public mutating func value(device: String, sensor: String, at time: Int64) -> Double? {
        guard let index = sensors.firstIndex(where: { devices[$0.device].id == device && $0.sensor.name == sensor })
        else { return nil }
        return base(sensorAt: index, at: time) + offset(sensorAt: index, at: time)
    }

    // MARK: Internals

    private mutating func applyPending(upTo time: Int64, into changes: inout [ActuatorStateChange]) {
        for index in actuators.indices where !actuators[index].pending.isEmpty {
            while let first = actuators[index].pending.first, first.at <= time {
                actuators[index].pending.removeFirst()
                if let change = setState(first.state, ofActuator: index, at: first.at) { changes.append(change) }
            }
        }
    }

    private mutating func setState(_ state: String, ofActuator index: Int, at time: Int64) -> ActuatorStateChange? {
        guard actuators[index].state != state else { return nil }  // idempotent: a duplicate changes nothing
        // Bring the offsets it moves up to now under the old state first.
        for sensor in actuators[index].effectSensors {
            _ = offset(sensorAt: sensor, at: time)
        }
        actuators[index].state = state
        return ActuatorStateChange(topic: actuators[index].stateTopic, state: state, timestamp: time)
    }

    private mutating func read(sensorAt index: Int, at time: Int64) -> SimulatedReading? {
        var state = sensors[index]
        defer { sensors[index] = state }
        let signal = state.sensor.signal
        if time < state.silentUntil { return nil }
        if signal.dropoutProbability > 0, state.random.nextUnit() < signal.dropoutProbability {
            state.silentUntil = time + signal.dropoutMilliseconds
            return nil
        }
        if case .randomWalk(_, let step, let drift) = signal.model {
            state.walk += (state.random.nextUnit() * 2 - 1) * step + drift
            if let bounds = signal.bounds { state.walk = min(max(state.walk, bounds.lowerBound), bounds.upperBound) }
        }
        sensors[index] = state
        var value = base(sensorAt: index, at: time) + offset(sensorAt: index, at: time)
        state.offset = sensors[index].offset
        state.offsetUpdatedAt = sensors[index].offsetUpdatedAt
        if signal.noise > 0 { value += state.random.nextGaussian() * signal.noise }
        if signal.spikeProbability > 0, state.random.nextUnit() < signal.spikeProbability {
            value += state.random.nextUnit() < 0.5 ? -signal.spikeSize : signal.spikeSize
        }
        if let bounds = signal.bounds { value = min(max(value, bounds.lowerBound), bounds.upperBound) }
        value = (value * 100).rounded() / 100
        state.sequence += 1
        let payload = Simulator.payload(state.sensor, value: value, time: time, sequence: state.sequence)
        if let driven = state.drives {
            // What the sensor reports is the state of its own effects (`open`, or the number).
            let reported: String
            if case .states(let names) = state.sensor.payload {
                reported = Simulator.stateName(names, value: value)
            } else {
                reported = JSONValue.format(value)
            }
            _ = setState(reported, ofActuator: driven, at: time)
        }
        return SimulatedReading(topic: state.topic, payload: payload, value: value, timestamp: time)
    }

    private func base(sensorAt index: Int, at time: Int64) -> Double {
        let state = sensors[index]
        switch state.sensor.signal.model {
        case .constant(let value): return value
        case .randomWalk: return state.walk
        case .sine(let mean, let amplitude, let period):
            return mean + amplitude * sin(2 * .pi * Double(time - start) / Double(period))
        case .daily(let mean, let amplitude, let peakHour):
            let hour = Double(((time % 86_400_000) + 86_400_000) % 86_400_000) / 3_600_000
            return mean + amplitude * cos(2 * .pi * (hour - peakHour) / 24)
        case .steps(let steps):
            let elapsed = time - start
            return steps.last(where: { $0.offsetMilliseconds <= elapsed })?.value ?? steps.first?.value ?? 0
        }
    }

    /// Integrates the actuator effects on a sensor up to `time` and returns its offset.
    private mutating func offset(sensorAt index: Int, at time: Int64) -> Double {
        let seconds = Double(max(0, time - sensors[index].offsetUpdatedAt)) / 1000
        var offset = sensors[index].offset
        if seconds > 0 {
            for actuatorIndex in actuatorsByDevice[sensors[index].device] {
                let actuator = actuators[actuatorIndex]
                for (effect, sensor) in zip(actuator.actuator.effects, actuator.effectSensors) where sensor == index {
                    if actuator.state == effect.state {
                        offset += effect.ratePerSecond * seconds
                        if let limit = effect.limit { offset = min(max(offset, -abs(limit)), abs(limit)) }
                    } else if effect.recoverPerSecond > 0 {
                        let step = effect.recoverPerSecond * seconds
                        offset = abs(offset) <= step ? 0 : offset - step * (offset > 0 ? 1 : -1)
                    }
                }
            }
        }
        sensors[index].offset = offset
        sensors[index].offsetUpdatedAt = max(sensors[index].offsetUpdatedAt, time)
        return offset
    }

    static func payload(_ sensor: Sensor, value: Double, time: Int64, sequence: Int64) -> [UInt8] {
        let number = JSONValue.format(value)
        switch sensor.payload {
        case .number: return Array(number.utf8)
        case .states(let names):
            return Array(
                JSONValue.object([
                    ("value", .string(stateName(names, value: value))), ("ts", .number(Double(time))),
                    ("seq", .number(Double(sequence))),
                ]).jsonText.utf8
            )
        case .object(let key):
            return Array(JSONValue.object([(key, .number(value))]).jsonText.utf8)
        case .json:
            return Array(
                JSONValue.object([
                    ("value", .number(value)), ("unit", .string(sensor.unit)), ("ts", .number(Double(time))),
                    ("seq", .number(Double(sequence))),
                ]).jsonText.utf8
            )
        }
    }

    /// The named state a value stands for: the name at its (rounded, clamped) index.
    static func stateName(_ names: [String], value: Double) -> String {
        names[min(max(Int(value.rounded()), 0), names.count - 1)]
    }

}

extension String {
    func replacingDevice(_ id: String) -> String {
        split(separator: "{device}", omittingEmptySubsequences: false).joined(separator: id)
    }
}

/// A deterministic generator (SplitMix64), so `--seed` reproduces every reading.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func nextGaussian() -> Double {
        let u1 = max(nextUnit(), .leastNonzeroMagnitude)
        let u2 = nextUnit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

/// Sensors by the time their next reading is due.
struct DueHeap: Sendable {
    struct Entry: Sendable, Comparable {
        var due: Int64
        var index: Int

        static func < (lhs: Entry, rhs: Entry) -> Bool { lhs.due < rhs.due }
    }

    private var heap = Heap<Entry>()

    var peek: Int64? { heap.min?.due }

    mutating func push(due: Int64, index: Int) { heap.insert(Entry(due: due, index: index)) }

    mutating func popIfDue(atOrBefore time: Int64) -> (Int64, Int)? {
        guard let first = heap.min, first.due <= time else { return nil }
        _ = heap.removeMin()
        return (first.due, first.index)
    }
}
