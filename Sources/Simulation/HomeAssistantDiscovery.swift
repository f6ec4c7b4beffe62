import FileFormats

/// Home Assistant MQTT discovery configs for simulated devices: each sensor becomes a `sensor` (or a
/// `binary_sensor` for two named states), each on/off actuator a `switch` and any other actuator a
/// `select`, grouped per device, available while the simulator's status topic says `online`.
/// Published retained under `homeassistant/…` by `sensor-sim --ha-discovery`.
public enum HomeAssistantDiscovery {
    /// One retained message: the config topic and its JSON payload.
    public struct Config: Sendable, Hashable {
        public var topic: String
        public var payload: JSONValue
    }

    public static func configs(
        for devices: [Device],
        availabilityTopic: String,
        prefix: String = "homeassistant"
    ) -> [Config] {
        var configs: [Config] = []
        for device in devices {
            let node = objectID(device.id)
            let deviceBlock = JSONValue.object([
                ("identifiers", .array([.string("sensor-pipeline-\(device.id)")])),
                ("name", .string(device.id)),
                ("manufacturer", .string("sensor-pipeline")),
                ("model", .string("simulated device")),
            ])
            func common(_ name: String, kind: String) -> [(String, JSONValue)] {
                [
                    ("name", .string(name)),
                    ("unique_id", .string("sensor-pipeline-\(device.id)-\(kind)-\(name)")),
                    ("object_id", .string("\(node)_\(objectID(name))")),
                    ("device", deviceBlock),
                    ("availability_topic", .string(availabilityTopic)),
                    ("payload_available", .string("online")),
                    ("payload_not_available", .string("offline")),
                ]
            }
            for sensor in device.sensors {
                let topic = sensor.topic.replacingDevice(device.id)
                var fields = common(sensor.name, kind: "sensor")
                fields.append(("state_topic", .string(topic)))
                let component: String
                switch sensor.payload {
                case .states(let names) where names.count == 2:
                    component = "binary_sensor"
                    fields += [
                        ("value_template", .string("{{ value_json.value }}")),
                        ("payload_off", .string(names[0])), ("payload_on", .string(names[1])),
                    ]
                    if let deviceClass = binaryDeviceClass(sensor.name) {
                        fields.append(("device_class", .string(deviceClass)))
                    }
                case .states:
                    component = "sensor"
                    fields.append(("value_template", .string("{{ value_json.value }}")))
                default:
                    component = "sensor"
                    switch sensor.payload {
                    case .json: fields.append(("value_template", .string("{{ value_json.value }}")))
                    case .object(let key): fields.append(("value_template", .string("{{ value_json['\(key)'] }}")))
                    default: break
                    }
                    if !sensor.unit.isEmpty { fields.append(("unit_of_measurement", .string(sensor.unit))) }
                    if let deviceClass = deviceClass(unit: sensor.unit, name: sensor.name) {
                        fields.append(("device_class", .string(deviceClass)))
                    }
                    fields.append(("state_class", .string("measurement")))
                }
                configs.append(
                    Config(
                        topic: "\(prefix)/\(component)/\(node)/\(objectID(sensor.name))/config",
                        payload: .object(fields)
                    )
                )
            }
            for actuator in device.actuators {
                var fields = common(actuator.name, kind: "actuator")
                fields += [
                    ("command_topic", .string(actuator.commandTopic.replacingDevice(device.id))),
                    ("state_topic", .string(actuator.stateTopic.replacingDevice(device.id))),
                    ("value_template", .string("{{ value_json.state }}")),
                ]
                let component: String
                if Set(actuator.states) == ["on", "off"] {
                    component = "switch"
                    fields += [
                        ("payload_on", .string("on")), ("payload_off", .string("off")),
                        ("state_on", .string("on")), ("state_off", .string("off")),
                    ]
                } else {
                    component = "select"
                    fields.append(("options", .array(actuator.states.map(JSONValue.string))))
                }
                configs.append(
                    Config(
                        topic: "\(prefix)/\(component)/\(node)/\(objectID(actuator.name))/config",
                        payload: .object(fields)
                    )
                )
            }
        }
        return configs
    }

    /// Home Assistant's device class for a unit (and a name, for the units several classes share).
    static func deviceClass(unit: String, name: String) -> String? {
        let name = name.lowercased()
        switch unit {
        case "°C", "°F", "K": return "temperature"
        case "%":
            if name.contains("humid") { return "humidity" }
            if name.contains("moist") { return "moisture" }
            if name.contains("batt") { return "battery" }
            return nil
        case "hPa", "Pa", "kPa", "bar", "mbar": return "pressure"
        case "ppm": return "carbon_dioxide"
        case "W", "kW": return "power"
        case "Wh", "kWh": return "energy"
        case "V": return "voltage"
        case "A": return "current"
        case "lx": return "illuminance"
        default: return nil
        }
    }

    static func binaryDeviceClass(_ name: String) -> String? {
        let name = name.lowercased()
        if name.contains("door") { return "door" }
        if name.contains("window") { return "window" }
        if name.contains("motion") { return "motion" }
        return nil
    }

    /// An id Home Assistant accepts in a discovery topic: `[a-zA-Z0-9_-]`.
    static func objectID(_ text: String) -> String {
        String(
            text.unicodeScalars.map { scalar in
                scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "-")
                    ? Character(scalar) : "_"
            }
        )
    }
}
