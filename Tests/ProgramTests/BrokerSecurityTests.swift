import Foundation
import MQTT
import MQTTTestSupport
import Testing

/// The ACL in `config/mosquitto/acl`, on a real broker, against the table it declares. A denied
/// MQTT 3.1.1 publish looks successful to the publisher, so every verdict is read at a witness.
@Suite("Broker ACL and TLS")
struct BrokerSecurityTests {
    static let users = [
        "rack-a1": "s3cret-rack-a1-4417", "rack-b2": "s3cret-rack-b2-8812", "rules-engine": "s3cret-engine-5590",
        "sensor-sim": "s3cret-sim-2263", "operator": "s3cret-operator-7734", "admin": "s3cret-admin-1198",
    ]

    /// (role, topic, may publish)
    static let publishTable: [(String, String, Bool)] = [
        ("rack-a1", "sensors/rack-a1/temperature", true),
        ("rack-a1", "sensors/rack-b2/temperature", false),
        ("rack-a1", "actuators/rack-a1/cooling/state", true),
        ("rack-a1", "actuators/rack-a1/cooling/set", false),
        ("rack-a1", "actuators/rack-b2/cooling/state", false),
        ("rules-engine", "actuators/rack-a1/cooling/set", true),
        ("rules-engine", "sensors/rack-a1/temperature", false),
        ("rules-engine", "actuators/rack-a1/cooling/state", false),
        ("rules-engine", "pipeline/engine/e1/status", true),
        ("sensor-sim", "sensors/rack-a1/temperature", true),
        ("sensor-sim", "actuators/rack-a1/cooling/state", true),
        ("sensor-sim", "actuators/rack-a1/cooling/set", false),
        ("sensor-sim", "pipeline/engine/e1/status", false),
    ]

    /// A topic each role may write, published last: when it arrives, everything before it would have.
    static let markers = [
        "rack-a1": "sensors/rack-a1/marker", "rules-engine": "pipeline/engine/marker",
        "sensor-sim": "pipeline/sim/marker",
    ]

    /// (role, topic, may read)
    static let readTable: [(String, String, Bool)] = [
        ("rack-a1", "actuators/rack-a1/cooling/set", true),
        ("rack-a1", "actuators/rack-b2/cooling/set", false),
        ("rack-a1", "sensors/rack-b2/temperature", false),
        ("rack-a1", "actuators/rack-a1/cooling/state", false),
        ("rules-engine", "sensors/rack-a1/temperature", true),
        ("rules-engine", "actuators/rack-a1/cooling/state", true),
        ("rules-engine", "actuators/rack-a1/cooling/set", false),
        ("rules-engine", "pipeline/sim/s1/status", false),
        ("sensor-sim", "actuators/rack-a1/cooling/set", true),
        ("sensor-sim", "sensors/rack-a1/temperature", false),
        ("sensor-sim", "actuators/rack-a1/cooling/state", false),
        ("operator", "sensors/rack-a1/temperature", true),
        ("operator", "actuators/rack-a1/cooling/set", true),
    ]

    /// A topic each reader may read, which `admin` publishes last.
    static let readMarkers = [
        "rack-a1": "actuators/rack-a1/marker/set", "rules-engine": "sensors/marker/m",
        "sensor-sim": "actuators/m/marker/set",
        "operator": "marker/operator",
    ]

    func startBroker(tls: TestCertificates? = nil, directory: String) async throws -> TestBroker {
        let passwords = try TestBroker.makePasswordFile(users: Self.users, in: directory)
        let declared = try String(
            contentsOfFile: RulesEngineCommandTests.packageRoot + "/config/mosquitto/acl",
            encoding: .utf8
        )
        let acl = try TestBroker.makeACLFile(
            declared + "\n# test only: the witness\nuser admin\ntopic readwrite #\n",
            in: directory
        )
        var listener = "allow_anonymous false\npassword_file \(passwords)\nacl_file \(acl)"
        if let tls {
            listener += "\ncafile \(tls.caCertificate)\ncertfile \(tls.serverCertificate)\nkeyfile \(tls.serverKey)"
        }
        return try await TestBroker(listenerConfiguration: listener, directory: directory)
    }

    func client(
        _ broker: TestBroker,
        _ user: String,
        version: MQTTConfiguration.ProtocolVersion = .v311
    ) throws -> MQTTClient {
        var configuration = MQTTConfiguration(broker: broker.url, clientID: uniqueTopicPrefix(user))
        configuration.username = user
        configuration.password = Self.users[user]
        configuration.protocolVersion = version
        return try MQTTClient(configuration: configuration)
    }

    @Test func engineAndSimulatorRunOverTLSWithCredentialsAndNoSecretShows() async throws {
        let directory = try TestBroker.makeDirectory()
        let certificates = try TestCertificates(in: directory, hostNames: ["localhost"])
        let broker = try await startBroker(tls: certificates, directory: directory)
        let url = "mqtts://localhost:\(broker.port)"
        for user in ["rules-engine", "sensor-sim"] {
            try Self.users[user]!.write(toFile: directory + "/\(user).password", atomically: true, encoding: .utf8)
        }
        var witnessConfiguration = MQTTConfiguration(
            broker: try BrokerURL(parsing: url),
            clientID: uniqueTopicPrefix("witness")
        )
        witnessConfiguration.username = "admin"
        witnessConfiguration.password = Self.users["admin"]
        witnessConfiguration.tls = .init(caFile: certificates.caCertificate)
        let witness = try MQTTClient(configuration: witnessConfiguration)
        let inbox = MessageInbox(witness)
        try await withRunning([witness]) {
            try await witness.subscribe(to: ["actuators/+/cooling/set"])
            let common = ["--broker", url, "--tls-ca", certificates.caCertificate]
            let engine = try ChildProcess(
                builtProductPath("rules-engine"),
                [
                    "run", "--rules", RulesEngineCommandTests.packageRoot + "/rules", "--username", "rules-engine",
                    "--password-file", directory + "/rules-engine.password", "--client-id",
                    uniqueTopicPrefix("tls-engine"),
                ] + common
            )
            try await engine.waitForLine("ready")
            let simulator = try ChildProcess(
                builtProductPath("sensor-sim"),
                [
                    "run", RulesEngineCommandTests.packageRoot + "/Devices/server-room.yaml", "--speed", "20",
                    "--username", "sensor-sim", "--password-file", directory + "/sensor-sim.password", "--client-id",
                    uniqueTopicPrefix("tls-sim"),
                ] + common
            )
            try await simulator.waitForLine("ready")
            let command = try await inbox.next(timeout: .seconds(40))
            #expect(command.payloadString.contains("\"state\":\"on\""))
            for process in [engine, simulator] {
                let commandLine = (try? String(contentsOfFile: "/proc/\(process.pid)/cmdline", encoding: .utf8)) ?? ""
                #expect(!commandLine.isEmpty && !commandLine.contains("s3cret"))
                process.signal(SIGTERM)
                #expect(await process.waitForExit() == 0)
                #expect(!process.standardError.isEmpty && !process.standardError.contains("s3cret"))
            }
        }
    }

    @Test func publishingMatchesTheDeclaredTable() async throws {
        let broker = try await startBroker(directory: try TestBroker.makeDirectory())
        let witness = try client(broker, "admin")
        let inbox = MessageInbox(witness)
        let roles = Array(Set(Self.publishTable.map(\.0))).sorted()
        let clients = try roles.map { try client(broker, $0) }
        try await withRunning([witness] + clients) {
            try await witness.subscribe(to: ["#"])
            for (role, publisher) in zip(roles, clients) {
                for (_, topic, _) in Self.publishTable.filter({ $0.0 == role }) {
                    try await publisher.publish(role, to: topic, qos: .atLeastOnce)
                }
                try await publisher.publish(role, to: Self.markers[role]!, qos: .atLeastOnce)
            }
            var delivered = Set<String>()
            var markersSeen = Set<String>()
            while markersSeen.count < roles.count {
                let message = try await inbox.next()
                if Self.markers.values.contains(message.topic) {
                    markersSeen.insert(message.payloadString)
                } else {
                    delivered.insert("\(message.payloadString) \(message.topic)")
                }
            }
            let expected = Set(Self.publishTable.filter(\.2).map { "\($0.0) \($0.1)" })
            #expect(delivered == expected)
        }
    }

    @Test func readingMatchesTheDeclaredTable() async throws {
        let broker = try await startBroker(directory: try TestBroker.makeDirectory())
        let admin = try client(broker, "admin")
        let roles = Array(Set(Self.readTable.map(\.0))).sorted()
        let readers = try roles.map { try client(broker, $0) }
        let inboxes = readers.map(MessageInbox.init)
        try await withRunning([admin] + readers) {
            for (role, reader) in zip(roles, readers) {
                for (_, topic, _) in Self.readTable.filter({ $0.0 == role }) {
                    // mosquitto 2.0 grants the SUBACK and filters at delivery; a refusal is just as good.
                    _ = try? await reader.subscribe(to: [topic])
                }
                try await reader.subscribe(to: [Self.readMarkers[role]!])
            }
            for (_, topic, _) in Self.readTable { try await admin.publish(topic, to: topic, qos: .atLeastOnce) }
            for role in roles { try await admin.publish("marker", to: Self.readMarkers[role]!, qos: .atLeastOnce) }
            for (role, inbox) in zip(roles, inboxes) {
                var received = Set<String>()
                while true {
                    let message = try await inbox.next()
                    if message.topic == Self.readMarkers[role] { break }
                    received.insert(message.topic)
                }
                let expected = Set(Self.readTable.filter { $0.0 == role && $0.2 }.map(\.1))
                #expect(received == expected, "\(role)")
            }
        }
    }
}
