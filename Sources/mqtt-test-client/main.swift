import ArgumentParser
import Logging
import MQTT

#if canImport(Glibc)
import Glibc
#endif

/// A client for tests that must kill an MQTT client without DISCONNECT: connects with a will,
/// prints `ready` once connected, then waits until it is killed.
@main
struct MQTTTestClient: AsyncParsableCommand {
    @Option var broker: String
    @Option var clientID: String
    @Option var willTopic: String
    @Option var willPayload: String = "offline"

    func run() async throws {
        var configuration = MQTTConfiguration(broker: try BrokerURL(parsing: broker), clientID: clientID)
        configuration.will = MQTTWill(topic: willTopic, payload: Array(willPayload.utf8))
        configuration.keepAliveSeconds = 5
        let client = try MQTTClient(configuration: configuration, logger: Logger(label: "mqtt-test-client"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            try await client.waitUntilConnected()
            print("ready")
            fflush(nil)
            try await group.next()
        }
    }
}
