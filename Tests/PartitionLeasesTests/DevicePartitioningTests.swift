import Logging
import MQTT
import MQTTTestSupport
import NATS
import NATSTestSupport
import PartitionLeases
import Testing

/// The partition this code computes for a device is the one nats-server's subject mapping chose, for readings
/// published over MQTT (QoS 1) into its MQTT listener and captured by a JetStream stream.
@Suite("Device partitioning, live")
struct DevicePartitioningTests {
    @Test func theMappingPutsEachDeviceWhereThePartitioningSays() async throws {
        let partitioning = DevicePartitioning(partitions: 7)
        let mapping = partitioning.subjectMapping
        let server = try await TestNATSServer(
            mqtt: true,
            extraConfiguration: "mappings = { \"\(mapping.source)\": \"\(mapping.destination)\" }"
        )
        let logger = Logger(label: "partitioning-test")
        let connection = try await NATSConnection.connect(
            NATSConfiguration(servers: [server.url], name: "partitioning"),
            logger: logger
        )
        try await connection.createStream(named: "READINGS", subjects: ["part.>"])
        var configuration = MQTTConfiguration(broker: try #require(server.mqttURL), clientID: "partitioning-sensor")
        configuration.protocolVersion = .v311
        let sensor = try MQTTClient(configuration: configuration, logger: logger)
        let devices = (0..<40).map { "device-\($0)" } + ["a", "kitchen", "r12", "freezer-3"]
        try await withRunning([sensor]) {
            for device in devices {
                try await sensor.publish(Array("21.5".utf8), to: "sensors/\(device)/temperature", qos: .atLeastOnce)
            }
        }
        let stored = try await withTimeout(.seconds(20), "\(devices.count) readings in the stream") {
            var stored: [String: Int] = [:]
            for await message in try connection.readStream("READINGS", filter: "part.>") {
                let (partition, topic) = try #require(DevicePartitioning.topic(ofSubject: message.subject))
                #expect(message.payload == Array("21.5".utf8))
                stored[topic] = partition
                if stored.count == devices.count { break }
            }
            return stored
        }
        for device in devices {
            #expect(
                stored["sensors/\(device)/temperature"] == partitioning.partition(ofDevice: device),
                "\(device)"
            )
        }
        #expect(Set(stored.values).count == 7, "40-odd devices reach every one of 7 partitions")
        connection.close()
        await server.stop()
    }

    @Test func subjectsAndTopics() {
        #expect(DevicePartitioning.topic(ofSubject: "part.3.sensors.d1.temperature")! == (3, "sensors/d1/temperature"))
        #expect(DevicePartitioning.topic(ofSubject: "sensors.d1.temperature") == nil)
        #expect(DevicePartitioning.topic(ofSubject: "part.x.sensors.d1") == nil)
    }
}
