import Foundation
import Logging
import MQTT
import MQTTTestSupport
import NATS
import NATSTestSupport
import PartitionLeases
import Testing

/// The configurations docs/scale-out.md ships, started as written (only ports and directories replaced):
/// three nats-server nodes and an edge mosquitto bridged to them carry a reading up into the partitioned
/// stream and a command down to a device on the edge.
@Suite("Shipped scale-out configurations, live")
struct ShippedScaleOutConfigTests {
    static var docs: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/scale-out").path
    }

    @Test func aReadingGoesUpThroughTheEdgeIntoItsPartitionAndACommandComesDown() async throws {
        // The shipped ports, each replaced by a free one.
        let shippedPorts = [4222, 4223, 4224, 6222, 6223, 6224, 1884, 1885, 1886, 8222, 8223, 8224]
        let ports = Dictionary(
            uniqueKeysWithValues: zip(
                shippedPorts.map { "127.0.0.1:\($0)" },
                try TestNATSServer.freePorts(shippedPorts.count)
            )
        )
        func localized(_ text: String) -> String {
            var text = text
            for (shipped, port) in ports { text = text.replacingOccurrences(of: shipped, with: "127.0.0.1:\(port)") }
            return text
        }
        var nodes: [TestNATSServer] = []
        for index in 1...3 {
            let shipped = try String(contentsOfFile: Self.docs + "/nats-\(index).conf", encoding: .utf8)
            #expect(shipped.contains("partition(16,1)"))
            let text = localized(shipped)
                .replacingOccurrences(of: "/var/lib/sensor-pipeline/nats-\(index)", with: "$DIRECTORY/jetstream")
            nodes.append(
                try await TestNATSServer(
                    configuration: text,
                    clientPort: ports["127.0.0.1:\(4221 + index)"]!,
                    mqttPort: ports["127.0.0.1:\(1883 + index)"]!,
                    clusterPort: ports["127.0.0.1:\(6221 + index)"]!
                )
            )
        }
        for node in nodes { try await node.waitUntilReady() }

        let logger = Logger(label: "scale-out-config-test")
        let connection = try await NATSConnection.connect(
            NATSConfiguration(servers: nodes.map(\.url), name: "scale-out-config-test"),
            logger: logger
        )
        // The stream the engines read (they create it; so does this test), once the cluster has a leader.
        try await withTimeout(.seconds(60), "the READINGS stream on 3 replicas") {
            while true {
                do {
                    try await connection.createStream(named: "READINGS", subjects: ["part.>"], replicas: 3)
                    return
                } catch {
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
        }

        // The edge: the shipped bridge section, pointed at the nodes' MQTT ports.
        let edgeText = try String(contentsOfFile: Self.docs + "/mosquitto-edge.conf", encoding: .utf8)
        let bridge = try #require(edgeText.range(of: "connection ")).lowerBound
        let edge = try await TestBroker(extraConfiguration: localized(String(edgeText[bridge...])))

        let device = "edge-device-7"
        let sensor = try MQTTClient(
            configuration: MQTTConfiguration(broker: edge.url, clientID: "scale-out-sensor"),
            logger: logger
        )
        let actuator = try MQTTClient(
            configuration: MQTTConfiguration(broker: edge.url, clientID: "scale-out-actuator"),
            logger: logger
        )
        var engineConfiguration = MQTTConfiguration(
            broker: try #require(nodes[1].mqttURL),
            clientID: "scale-out-engine"
        )
        engineConfiguration.protocolVersion = .v311
        let engine = try MQTTClient(configuration: engineConfiguration, logger: logger)
        let commands = MessageInbox(actuator)
        let reading = try connection.readStream("READINGS", filter: "part.>")

        try await withRunning([sensor, actuator, engine]) {
            _ = try await actuator.subscribe(to: ["actuators/\(device)/fan/set"], qos: .atLeastOnce)
            // Up: the bridge connects on its own schedule; publish until the stream has the reading.
            let stored = try await withTimeout(.seconds(60), "the reading in its partition") {
                try await withThrowingTaskGroup(of: NATSStreamMessage?.self) { group in
                    group.addTask {
                        var iterator = reading.makeAsyncIterator()
                        return await iterator.next()
                    }
                    group.addTask {
                        while true {
                            try await sensor.publish(Array("31.5".utf8), to: "sensors/\(device)/temperature")
                            try await Task.sleep(for: .milliseconds(500))
                        }
                    }
                    let first = try await group.next()!
                    group.cancelAll()
                    return first
                }
            }
            let message = try #require(stored)
            let expected = DevicePartitioning(partitions: 16).partition(ofDevice: device)
            #expect(message.subject == "part.\(expected).sensors.\(device).temperature")
            #expect(message.payload == Array("31.5".utf8))

            // Down: the engine's command, published at the cluster, reaches the actuator on the edge.
            let command = try await withTimeout(.seconds(60), "the command on the edge") {
                try await withThrowingTaskGroup(of: MQTTMessage.self) { group in
                    group.addTask { try await commands.next(timeout: .seconds(60)) }
                    group.addTask {
                        while true {
                            try await engine.publish(
                                Array(#"{"state":"on"}"#.utf8),
                                to: "actuators/\(device)/fan/set",
                                qos: .atLeastOnce
                            )
                            try await Task.sleep(for: .milliseconds(500))
                        }
                    }
                    let first = try await group.next()!
                    group.cancelAll()
                    return first
                }
            }
            #expect(command.payloadString == #"{"state":"on"}"#)
        }
        reading.cancel()
        connection.close()
        edge.stop()
        for node in nodes { await node.stop() }
    }
}
