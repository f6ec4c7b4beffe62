import FileFormats
import Foundation
import Rules
import Testing

@testable import RulesEngineDaemon

/// The engine's Home Assistant view uses only keys Home Assistant documents for an MQTT `binary_sensor`
/// (https://www.home-assistant.io/integrations/binary_sensor.mqtt/), as the simulator's discovery test does.
@Suite("Home Assistant view of rule instances")
struct HomeAssistantRuleViewTests {
    static let documentedKeys: Set<String> = [
        "name", "unique_id", "object_id", "device", "device_class", "state_topic", "value_template", "payload_on",
        "payload_off", "json_attributes_topic", "json_attributes_template", "availability_topic",
        "payload_available", "payload_not_available", "expire_after", "force_update", "off_delay", "qos",
    ]
    static let documentedDeviceKeys: Set<String> = ["identifiers", "name", "manufacturer", "model"]

    static func instances() throws -> (RuleSet, [InstanceReport]) {
        let ruleSet = try RuleLoader.load([
            RuleSource(
                path: "rules.yaml",
                text: """
                    rules:
                      - {id: rack.hot, description: A hot rack, topic: "s/{rack}/t", above: 30, severity: critical}
                      - {id: rack-hot, topic: "s/{rack}/t", below: 0}
                    """
            )
        ])
        var evaluator = Evaluator(ruleSet: ruleSet)
        var events: [EvaluationEvent] = []
        evaluator.process(Reading(topic: "s/r.1/t", payload: "35", timestamp: 1000), into: &events)
        evaluator.process(Reading(topic: "s/r_1/t", payload: "20", timestamp: 2000), into: &events)
        return (ruleSet, evaluator.instanceReports())
    }

    @Test func configsUseDocumentedKeysAndIdsStayApart() throws {
        let (ruleSet, instances) = try Self.instances()
        let messages = HomeAssistantRuleView.messages(for: instances, ruleSet: ruleSet, engineID: "engine.a")
        let configs = messages.filter { $0.topic.hasSuffix("/config") }
        #expect(configs.count == instances.count && instances.count == 4)
        var objectIDs = Set<String>()
        for config in configs {
            let parts = config.topic.split(separator: "/")
            #expect(parts.count == 5 && parts[0] == "homeassistant" && parts[1] == "binary_sensor", "\(config.topic)")
            #expect(parts[2] == "sensor_pipeline_engine_a")
            #expect(parts[3].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
            objectIDs.insert(String(parts[3]))
            let payload = try #require(JSONValue(parsing: Array(config.payload.utf8)))
            guard case .object(let pairs) = payload else {
                Issue.record("not an object: \(config.payload)")
                continue
            }
            #expect(Set(pairs.map(\.key)).isSubset(of: Self.documentedKeys), "\(pairs.map(\.key))")
            #expect(payload["device_class"] == .string("problem"))
            #expect(payload["availability_topic"] == .string("pipeline/engine/engine.a/status"))
            guard case .object(let device)? = payload["device"] else {
                Issue.record("no device block")
                continue
            }
            #expect(Set(device.map(\.key)).isSubset(of: Self.documentedDeviceKeys))
            // The state topic carries the state and the attributes.
            guard case .string(let stateTopic)? = payload["state_topic"] else {
                Issue.record("no state topic")
                continue
            }
            #expect(payload["json_attributes_topic"] == .string(stateTopic))
            #expect(messages.contains { $0.topic == stateTopic })
        }
        // rack.hot/r.1 and rack-hot/r_1 read alike once sanitised: the hash keeps them apart.
        #expect(objectIDs.count == 4)
    }

    @Test func theStateIsOnWhileFiringWithItsReason() throws {
        let (ruleSet, instances) = try Self.instances()
        let messages = HomeAssistantRuleView.messages(for: instances, ruleSet: ruleSet, engineID: "e")
        let states = messages.filter { !$0.topic.hasSuffix("/config") }.compactMap {
            JSONValue(parsing: Array($0.payload.utf8))
        }
        let firing = states.filter { $0["state"] == .string("ON") }
        #expect(firing.count == 1)
        #expect(firing.first?["rule"] == .string("rack.hot"))
        #expect(firing.first?["reason"] == .string("value 35 above 30"))
        #expect(firing.first?["since"] == .string("1970-01-01T00:00:01.000Z"))
        #expect(firing.first?["description"] == .string("A hot rack"))
        #expect(states.filter { $0["state"] == .string("OFF") }.count == 3)
    }
}
