import FileFormats
import Foundation
import Yams

/// Reads device files (`Devices/*.yaml`), validating every key with its position.
public enum DeviceLoader {
    static let deviceKeys = ["id", "description", "sensors", "actuators"]
    static let sensorKeys = [
        "name", "topic", "unit", "interval", "signal", "noise", "spikes", "dropouts", "bounds", "payload", "effects",
    ]
    static let signalKeys = [
        "model", "value", "start", "step", "drift", "mean", "amplitude", "period", "peak_hour", "steps",
    ]
    static let actuatorKeys = [
        "name", "command_topic", "state_topic", "states", "initial", "effects", "lag", "fail_probability",
    ]
    static let effectKeys = ["sensor", "when", "rate", "limit", "recover"]

    /// Loads all files; throws every problem found. With `replicas` > 1 each device is copied with ids
    /// suffixed `-1` … `-N`.
    public static func load(
        _ sources: [(path: String, text: String)],
        replicas: Int = 1
    ) throws(DeviceLoadError) -> [Device] {
        var devices: [Device] = []
        var diagnostics: [Diagnostic] = []
        for source in sources {
            var reader = YAMLReader(file: source.path)
            devices += parse(source.text, reader: &reader)
            diagnostics += reader.diagnostics
        }
        var seen: [String: SourceLocation] = [:]
        for device in devices {
            if let first = seen[device.id] {
                diagnostics.append(
                    Diagnostic(device.location, "duplicate device id '\(device.id)' (first defined at \(first))")
                )
            }
            seen[device.id] = device.location
        }
        // A problem in a merged definition is found once per use: say it once.
        guard diagnostics.isEmpty else { throw DeviceLoadError(diagnostics: Array(Set(diagnostics)).sorted()) }
        guard replicas > 1 else { return devices }
        return devices.flatMap { device in
            (1...replicas).map { index in
                var copy = device
                copy.id = "\(device.id)-\(index)"
                return copy
            }
        }
    }

    /// Whether `text` is a device file (a top-level `devices:` and no `rules:`), so that a tool given any YAML
    /// file checks it as what it is.
    public static func isDeviceFile(_ text: String) -> Bool {
        guard case .mapping(let top)? = try? Yams.compose(yaml: text) else { return false }
        let keys = top.keys.compactMap(\.string)
        return keys.contains("devices") && !keys.contains("rules") && !keys.contains("parameters")
    }

    static func parse(_ text: String, reader: inout YAMLReader) -> [Device] {
        guard let composed = reader.compose(text) else { return [] }
        // Shared sensor and actuator definitions: `<<: *anchor` merge keys and `x-` keys to anchor them in.
        let root = YAMLReader.expandingMergeKeys(composed, droppingExtensionKeys: true)
        guard let top = reader.mapping(root, what: "a device file", allowed: ["devices"])
        else { return [] }
        guard let list = top["devices"], let items = reader.sequence(list.value, what: "'devices'") else {
            if top["devices"] == nil { reader.error(root, "a device file needs a top-level 'devices:' list") }
            return []
        }
        return items.compactMap { parseDevice($0, reader: &reader) }
    }

    static func parseDevice(_ node: Node, reader: inout YAMLReader) -> Device? {
        guard let entries = reader.mapping(node, what: "a device", allowed: deviceKeys) else { return nil }
        guard let idEntry = entries["id"], let id = reader.string(idEntry.value, what: "'id'") else {
            if entries["id"] == nil { reader.error(node, "a device needs an 'id'") }
            return nil
        }
        if id.isEmpty || !id.utf8.allSatisfy(isSafe) {
            reader.error(idEntry.value, "device id '\(id)' may only hold letters, digits, '_', '.' and '-'")
        }
        let sensorNodes = entries["sensors"].flatMap { reader.sequence($0.value, what: "'sensors'") } ?? []
        var parsed = sensorNodes.map { parseSensor($0, reader: &reader) }
        // Every sensor the file declares, including one with problems of its own: an effect that names it is
        // not wrong too.
        let declared = sensorNodes.compactMap { node -> String? in
            guard case .mapping(let mapping) = node, case .scalar(let name)? = mapping["name"] else { return nil }
            return name.string
        }
        // Sensor effects can name any sensor of the device, so they are read once all sensors are known.
        for (index, node) in sensorNodes.enumerated() {
            guard case .mapping(let mapping) = node, let effectsNode = mapping["effects"] else { continue }
            let effects = parseEffects(effectsNode, sensors: declared, states: nil, reader: &reader)
            parsed[index]?.effects = effects
        }
        let sensors = parsed.compactMap { $0 }
        let actuatorNodes = entries["actuators"].flatMap { reader.sequence($0.value, what: "'actuators'") } ?? []
        let actuators = actuatorNodes.compactMap { parseActuator($0, sensors: declared, reader: &reader) }
        if sensorNodes.isEmpty && actuatorNodes.isEmpty {
            reader.error(node, "device '\(id)' has neither sensors nor actuators")
        }
        return Device(id: id, sensors: sensors, actuators: actuators, location: reader.location(node))
    }

    static func parseSensor(_ node: Node, reader: inout YAMLReader) -> Sensor? {
        guard let entries = reader.mapping(node, what: "a sensor", allowed: sensorKeys) else { return nil }
        guard let nameEntry = entries["name"], let name = reader.string(nameEntry.value, what: "'name'") else {
            if entries["name"] == nil { reader.error(node, "a sensor needs a 'name'") }
            return nil
        }
        let topic = entries["topic"].flatMap { reader.string($0.value, what: "'topic'") } ?? "sensors/{device}/\(name)"
        checkTopic(topic, at: entries["topic"]?.value ?? node, reader: &reader)
        let unit = entries["unit"].flatMap { reader.string($0.value, what: "'unit'") } ?? ""
        var interval: Int64 = 5_000
        if let entry = entries["interval"], let value = reader.duration(entry.value, what: "'interval'") {
            if value <= 0 { reader.error(entry.value, "'interval' must be longer than 0") }
            interval = value
        }
        // Every key is checked even when the signal is wrong, so that one run reports every problem.
        var signal = Signal(model: .constant(0))
        var signalIsValid = false
        if let signalEntry = entries["signal"] {
            if let valid = parseSignal(signalEntry.value, reader: &reader) {
                signal = valid
                signalIsValid = true
            }
        } else {
            reader.error(node, "sensor '\(name)' needs a 'signal'")
        }
        if let entry = entries["noise"], let value = reader.number(entry.value, what: "'noise'") {
            if value < 0 { reader.error(entry.value, "'noise' must be 0 or more") }
            signal.noise = value
        }
        if let entry = entries["spikes"],
            let spikes = reader.mapping(entry.value, what: "'spikes'", allowed: ["probability", "size"])
        {
            signal.spikeProbability = probability(spikes["probability"], reader: &reader) ?? 0
            signal.spikeSize = spikes["size"].flatMap { reader.number($0.value, what: "spike 'size'") } ?? 0
        }
        if let entry = entries["dropouts"],
            let dropouts = reader.mapping(entry.value, what: "'dropouts'", allowed: ["probability", "duration"])
        {
            signal.dropoutProbability = probability(dropouts["probability"], reader: &reader) ?? 0
            signal.dropoutMilliseconds =
                dropouts["duration"].flatMap { reader.duration($0.value, what: "dropout 'duration'") } ?? 0
        }
        if let entry = entries["bounds"], let items = reader.sequence(entry.value, what: "'bounds'") {
            if items.count == 2, let low = reader.number(items[0], what: "the low bound"),
                let high = reader.number(items[1], what: "the high bound")
            {
                if low < high {
                    signal.bounds = low...high
                } else {
                    reader.error(entry.value, "'bounds' needs low < high")
                }
            } else if items.count != 2 {
                reader.error(entry.value, "'bounds' needs two numbers: [low, high]")
            }
        }
        var payload = Sensor.PayloadShape.json
        if let entry = entries["payload"] {
            if case .mapping = entry.value {
                if let shape = reader.mapping(entry.value, what: "'payload'", allowed: ["key", "states"]) {
                    if let key = shape["key"].flatMap({ reader.string($0.value, what: "payload 'key'") }) {
                        payload = .object(key: key)
                    } else if let items = shape["states"].flatMap({
                        reader.sequence($0.value, what: "payload 'states'")
                    }),
                        !items.isEmpty
                    {
                        payload = .states(items.compactMap { reader.string($0, what: "a state") })
                    } else {
                        reader.error(entry.value, "payload needs 'key: NAME' or 'states: [closed, open]'")
                    }
                }
            } else {
                switch reader.string(entry.value, what: "'payload'") {
                case "json": payload = .json
                case "number": payload = .number
                case let other?:
                    reader.error(entry.value, "payload '\(other)' must be json, number, {key: NAME} or {states: [...]}")
                case nil: break
                }
            }
        }
        guard signalIsValid else { return nil }
        return Sensor(
            name: name,
            topic: topic,
            unit: unit,
            intervalMilliseconds: interval,
            signal: signal,
            payload: payload
        )
    }

    static func parseSignal(_ node: Node, reader: inout YAMLReader) -> Signal? {
        guard let entries = reader.mapping(node, what: "a signal", allowed: signalKeys) else { return nil }
        guard let modelEntry = entries["model"], let model = reader.string(modelEntry.value, what: "'model'") else {
            if entries["model"] == nil {
                reader.error(node, "a signal needs a 'model': constant, random_walk, sine, daily or steps")
            }
            return nil
        }
        func number(_ key: String, default value: Double? = nil) -> Double? {
            guard let entry = entries[key] else {
                if value == nil { reader.error(node, "the \(model) model needs '\(key)'") }
                return value
            }
            return reader.number(entry.value, what: "'\(key)'")
        }
        switch model {
        case "constant":
            return number("value").map { Signal(model: .constant($0)) }
        case "random_walk":
            guard let start = number("start"), let step = number("step", default: 0.1),
                let drift = number("drift", default: 0)
            else { return nil }
            return Signal(model: .randomWalk(start: start, step: step, drift: drift))
        case "sine":
            guard let mean = number("mean"), let amplitude = number("amplitude") else { return nil }
            guard let periodEntry = entries["period"],
                let period = reader.duration(periodEntry.value, what: "'period'"),
                period > 0
            else {
                reader.error(entries["period"]?.value ?? node, "the sine model needs a 'period' longer than 0")
                return nil
            }
            return Signal(model: .sine(mean: mean, amplitude: amplitude, periodMilliseconds: period))
        case "daily":
            guard let mean = number("mean"), let amplitude = number("amplitude"),
                let peak = number("peak_hour", default: 14)
            else { return nil }
            guard (0...24).contains(peak) else {
                reader.error(entries["peak_hour"]?.value ?? node, "'peak_hour' must be 0 to 24")
                return nil
            }
            return Signal(model: .daily(mean: mean, amplitude: amplitude, peakHour: peak))
        case "steps":
            guard let entry = entries["steps"], let items = reader.sequence(entry.value, what: "'steps'"),
                !items.isEmpty
            else {
                reader.error(
                    entries["steps"]?.value ?? node,
                    "the steps model needs 'steps: [{at: 0s, value: 20}, ...]'"
                )
                return nil
            }
            var steps: [(offsetMilliseconds: Int64, value: Double)] = []
            for item in items {
                guard let step = reader.mapping(item, what: "a step", allowed: ["at", "value"]),
                    let at = step["at"].flatMap({ reader.duration($0.value, what: "step 'at'") }),
                    let value = step["value"].flatMap({ reader.number($0.value, what: "step 'value'") })
                else {
                    reader.error(item, "a step needs 'at' and 'value'")
                    continue
                }
                steps.append((at, value))
            }
            return Signal(model: .steps(steps.sorted { $0.offsetMilliseconds < $1.offsetMilliseconds }))
        default:
            reader.error(modelEntry.value, "unknown model '\(model)': use constant, random_walk, sine, daily or steps")
            return nil
        }
    }

    static func parseActuator(_ node: Node, sensors: [String], reader: inout YAMLReader) -> Actuator? {
        guard let entries = reader.mapping(node, what: "an actuator", allowed: actuatorKeys) else { return nil }
        guard let nameEntry = entries["name"], let name = reader.string(nameEntry.value, what: "'name'") else {
            if entries["name"] == nil { reader.error(node, "an actuator needs a 'name'") }
            return nil
        }
        let commandTopic =
            entries["command_topic"].flatMap { reader.string($0.value, what: "'command_topic'") }
            ?? "actuators/{device}/\(name)/set"
        let stateTopic =
            entries["state_topic"].flatMap { reader.string($0.value, what: "'state_topic'") }
            ?? "actuators/{device}/\(name)/state"
        checkTopic(commandTopic, at: entries["command_topic"]?.value ?? node, reader: &reader)
        checkTopic(stateTopic, at: entries["state_topic"]?.value ?? node, reader: &reader)
        let states =
            entries["states"].flatMap { reader.sequence($0.value, what: "'states'") }?
            .compactMap { reader.string($0, what: "a state") } ?? ["off", "on"]
        var initial = entries["initial"].flatMap { reader.string($0.value, what: "'initial'") } ?? states.first ?? "off"
        // State names compare without case, as everywhere; the declared spelling is kept.
        if let declared = states.first(where: { ActuatorState.same($0, initial) }) {
            initial = declared
        } else if let entry = entries["initial"] {
            reader.error(entry.value, "initial state '\(initial)' is not one of \(states)")
        }
        let effects =
            entries["effects"].map { parseEffects($0.value, sensors: sensors, states: states, reader: &reader) } ?? []
        return Actuator(
            name: name,
            commandTopic: commandTopic,
            stateTopic: stateTopic,
            states: states,
            initialState: initial,
            effects: effects,
            lagMilliseconds: entries["lag"].flatMap { reader.duration($0.value, what: "'lag'") } ?? 0,
            failProbability: probability(entries["fail_probability"], reader: &reader) ?? 0
        )
    }

    /// Effects on sensors of the device (`sensors`: their names); `states` (an actuator's) limits what `when` may be.
    static func parseEffects(
        _ node: Node,
        sensors: [String],
        states: [String]?,
        reader: inout YAMLReader
    ) -> [Actuator.Effect] {
        var effects: [Actuator.Effect] = []
        if let items = reader.sequence(node, what: "'effects'") {
            for item in items {
                guard let effect = reader.mapping(item, what: "an effect", allowed: effectKeys) else { continue }
                guard let sensorName = effect["sensor"].flatMap({ reader.string($0.value, what: "effect 'sensor'") }),
                    let rate = effect["rate"].flatMap({ reader.number($0.value, what: "effect 'rate'") })
                else {
                    reader.error(item, "an effect needs 'sensor' and 'rate' (per second)")
                    continue
                }
                if !sensors.contains(sensorName), let sensorEntry = effect["sensor"] {
                    reader.error(
                        sensorEntry.value,
                        "effect on sensor '\(sensorName)', which this device does not have (it has \(sensors))"
                    )
                }
                var state = effect["when"].flatMap { reader.string($0.value, what: "effect 'when'") } ?? "on"
                if let states {
                    if let declared = states.first(where: { ActuatorState.same($0, state) }) {
                        state = declared
                    } else if let whenEntry = effect["when"] {
                        reader.error(whenEntry.value, "effect state '\(state)' is not one of \(states)")
                    }
                }
                effects.append(
                    Actuator.Effect(
                        sensor: sensorName,
                        state: state,
                        ratePerSecond: rate,
                        limit: effect["limit"].flatMap { reader.number($0.value, what: "effect 'limit'") },
                        recoverPerSecond: effect["recover"].flatMap {
                            reader.number($0.value, what: "effect 'recover'")
                        } ?? 0
                    )
                )
            }
        }
        return effects
    }

    static func probability(_ entry: (key: Node, value: Node)?, reader: inout YAMLReader) -> Double? {
        guard let entry, let value = reader.number(entry.value, what: "'\(entry.key.scalar?.string ?? "probability")'")
        else { return nil }
        guard (0...1).contains(value) else {
            reader.error(entry.value, "a probability must be from 0 to 1")
            return nil
        }
        return value
    }

    static func checkTopic(_ topic: String, at node: Node, reader: inout YAMLReader) {
        let literal = topic.replacingOccurrences(of: "{device}", with: "x")
        if literal.isEmpty || literal.contains("+") || literal.contains("#") || literal.contains("{") {
            reader.error(node, "topic '\(topic)' must be a plain topic; only {device} may be filled in")
        }
    }

    static func isSafe(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
            true
        default: false
        }
    }
}

/// Every problem of a set of device files.
public struct DeviceLoadError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [Diagnostic]
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}
