import FileFormats
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

extension PipelineMonitorTests {
    /// With `--engine`, every instance the engine lists is shown: pending ones and those that never fired too,
    /// firing first, with the current value and what holds an instance.
    @Test func listsEveryInstanceFromTheEngine() throws {
        var monitor = PipelineMonitor()
        let reports = try #require(
            JSONValue(
                parsing: Array(
                    #"""
                    [{"rule":"log-only","labels":{"room":"a"},"state":"inactive","last_value":20,"last_reason":null},
                     {"rule":"cooling","labels":{"rack":"r1"},"state":"firing","last_value":22,"last_reason":"value 31.004999 above 30",
                      "held_by":"min_on","held_until":3615000},
                     {"rule":"door","labels":{"freezer":"f1"},"state":"pending","last_value":"open","last_reason":null},
                     {"rule":"heating","labels":{"rack":"r1"},"state":"inactive","last_value":21,"last_reason":null,
                      "window":{"window":"rate per 1m over 2m","value":null}}]
                    """#.utf8
                )
            )
        )
        monitor.receiveInstances(reports, at: 3_600_000)
        let screen = monitor.render(broker: "mqtt://b")
        let rows = screen.filter { $0.hasPrefix("  cooling") || $0.hasPrefix("  door") || $0.hasPrefix("  log-only") }
        #expect(rows.count == 3)
        #expect(screen.contains { $0.hasPrefix("  heating rack=r1") && $0.contains("rate per 1m over 2m = unknown") })
        #expect(rows.first?.contains("FIRING") == true)
        #expect(rows.first?.contains("22") == true)
        #expect(rows.first?.contains("held by min_on until 01:00:15; last: value 31 above 30") == true, "\(rows)")
        #expect(rows.dropFirst().first?.contains("pending") == true)
        #expect(rows.last?.hasPrefix("  log-only room=a") == true && rows.last?.contains("ok") == true)
        #expect(!screen.joined().contains("null"))
    }
}

extension PipelineMonitorTests {
    /// A payload that is only a number gets the unit its device file gives (`--devices`).
    @Test func aBareNumberGetsItsUnitFromTheDeviceFiles() {
        var monitor = PipelineMonitor(units: ["sensors/tank-1/level": "cm"])
        monitor.receive(MQTTMessage(topic: "sensors/tank-1/level", payload: Array("42.5".utf8)), at: 0)
        #expect(monitor.render(broker: "mqtt://b").contains { $0.contains("tank-1/level") && $0.hasSuffix("42.5 cm") })
    }
}

extension PipelineMonitorTests {
    /// The title says what Ctrl-C does to the monitor itself (the demo's own line says it stops the demo).
    @Test func theTitleSaysCtrlCQuitsTheMonitor() {
        let title = PipelineMonitor().render(broker: "mqtt://b").first ?? ""
        #expect(title == "sensor-pipeline — mqtt://b — 0 readings seen — Ctrl-C quits the monitor")
    }

    /// With `--engine`, LAST COMMANDS come from the engine's `/api/commands` at once, not only those sent after
    /// the monitor started, newest first, with their reason tidied.
    @Test func lastCommandsComeFromTheEngine() throws {
        var monitor = PipelineMonitor()
        let commands = try #require(
            JSONValue(
                parsing: Array(
                    #"""
                    [{"ts":3605000,"topic":"actuators/r1/cooling/set","state":"on","rule":"cooling","reason":"avg 1m = 30.7118181818182 above 30"},
                     {"ts":3600000,"topic":"actuators/r2/cooling/set","state":"off","rule":"cooling","reason":"value 27 at or below 28"}]
                    """#.utf8
                )
            )
        )
        monitor.receiveCommands(commands)
        let screen = monitor.render(broker: "mqtt://b")
        let last = Array(screen.drop { $0 != "LAST COMMANDS" }.dropFirst())
        #expect(
            last == [
                "  01:00:05  actuators/r1/cooling/set on  avg 1m = 30.71 above 30",
                "  01:00:00  actuators/r2/cooling/set off  value 27 at or below 28",
            ],
            "\(last)"
        )
    }
}
