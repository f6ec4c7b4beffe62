import FileFormats
import Foundation
import Testing

@testable import Simulation

/// Discovery payloads use only keys Home Assistant documents for each MQTT platform
/// (https://www.home-assistant.io/integrations/sensor.mqtt/ and siblings), and carry what each needs.
@Suite("Home Assistant discovery")
struct HomeAssistantDiscoveryTests {
    static let common: Set<String> = [
        "name", "unique_id", "object_id", "device", "availability_topic", "payload_available",
        "payload_not_available", "value_template",
    ]
    static let documentedKeys: [String: Set<String>] = [
        "sensor": common.union(["state_topic", "unit_of_measurement", "device_class", "state_class"]),
        "binary_sensor": common.union(["state_topic", "payload_on", "payload_off", "device_class"]),
        "switch": common.union(["state_topic", "command_topic", "payload_on", "payload_off", "state_on", "state_off"]),
        "select": common.union(["state_topic", "command_topic", "options"]),
    ]
    static let requiredKeys: [String: Set<String>] = [
        "sensor": ["state_topic"], "binary_sensor": ["state_topic"], "switch": ["command_topic"],
        "select": ["command_topic", "options"],
    ]
    static let deviceClasses: [String: Set<String>] = [
        "sensor": [
            "temperature", "humidity", "moisture", "battery", "pressure", "carbon_dioxide", "power", "energy",
            "voltage", "current", "illuminance",
        ],
        "binary_sensor": ["door", "window", "motion"],
    ]

    static func shippedDevices() throws -> [Device] {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Devices")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }
        return try DeviceLoader.load(
            files.sorted().map {
                (path: $0, text: try String(contentsOf: folder.appendingPathComponent($0), encoding: .utf8))
            },
            replicas: 1
        )
    }

    @Test func everyShippedDeviceHasValidConfigs() throws {
        let devices = try Self.shippedDevices()
        let configs = HomeAssistantDiscovery.configs(for: devices, availabilityTopic: "pipeline/sim/x/status")
        #expect(configs.count == devices.reduce(0) { $0 + $1.sensors.count + $1.actuators.count })
        var uniqueIDs = Set<String>()
        for config in configs {
            let parts = config.topic.split(separator: "/")
            #expect(parts.count == 5 && parts[0] == "homeassistant" && parts[4] == "config", "\(config.topic)")
            #expect(
                parts[2].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
                    && parts[3].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") },
                "\(config.topic)"
            )
            let component = String(parts[1])
            guard case .object(let pairs) = config.payload, let documented = Self.documentedKeys[component] else {
                Issue.record("unexpected component or payload in \(config.topic)")
                continue
            }
            let keys = Set(pairs.map(\.key))
            #expect(
                keys.isSubset(of: documented),
                "undocumented keys \(keys.subtracting(documented)) in \(config.topic)"
            )
            #expect(Self.requiredKeys[component, default: []].isSubset(of: keys), "\(config.topic)")
            if case .string(let deviceClass)? = config.payload["device_class"] {
                #expect(Self.deviceClasses[component, default: []].contains(deviceClass), "\(config.topic)")
            }
            if case .string(let id)? = config.payload["unique_id"] { #expect(uniqueIDs.insert(id).inserted) }
            // A named state is read as `{"value": "open", …}`: the config says where the state is.
            if component == "binary_sensor" {
                #expect(config.payload["value_template"] == .string("{{ value_json.value }}"), "\(config.topic)")
            }
        }
        // The shipped world covers each platform the mapping makes.
        let components = Set(configs.map { String($0.topic.split(separator: "/")[1]) })
        #expect(components.isSuperset(of: ["sensor", "binary_sensor", "switch"]), "\(components)")
    }

    @Test(
        arguments: [
            ("°C", "temperature", "temperature"), ("%", "humidity", "humidity"), ("%", "soil_moisture", "moisture"),
            ("%", "valve", nil), ("hPa", "pressure", "pressure"), ("", "count", nil),
        ] as [(String, String, String?)]
    )
    func deviceClassFollowsTheUnit(unit: String, name: String, expected: String?) {
        #expect(HomeAssistantDiscovery.deviceClass(unit: unit, name: name) == expected)
    }
}
