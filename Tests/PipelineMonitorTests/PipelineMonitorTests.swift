import MQTT
import PipelineMonitor
import Testing

@Suite("pipeline-monitor view")
struct PipelineMonitorTests {
    @Test func showsSensorsInstancesActuatorsAndCommands() {
        var monitor = PipelineMonitor()
        let messages = [
            MQTTMessage(topic: "sensors/rack-1/temperature", payload: Array(#"{"value": 31.456, "unit": "°C"}"#.utf8)),
            MQTTMessage(topic: "sensors/freezer-1/door", payload: Array("open".utf8)),
            MQTTMessage(
                topic: "pipeline/engine/e/transitions",
                payload: Array(
                    #"{"rule":"rack-cooling","transition":"fire","labels":{"rack":"rack-1"},"reason":"hot"}"#.utf8
                )
            ),
            MQTTMessage(topic: "actuators/rack-1/cooling/set", payload: Array(#"{"state":"on","reason":"hot"}"#.utf8)),
            MQTTMessage(topic: "actuators/rack-1/cooling/state", payload: Array(#"{"state":"on"}"#.utf8)),
        ]
        for message in messages { monitor.receive(message, at: 3_600_000) }
        let screen = monitor.render(broker: "mqtt://b").joined(separator: "\n")
        #expect(screen.contains("rack-1/temperature") && screen.contains("31.46 °C"))
        #expect(screen.contains("freezer-1/door") && screen.contains("open"))
        #expect(screen.contains("rack-cooling rack=rack-1") && screen.contains("FIRING"))
        #expect(screen.contains("01:00:00  actuators/rack-1/cooling/set on  hot"))
        #expect(screen.contains("rack-1/cooling") && screen.contains("2 readings seen"))
    }
}
