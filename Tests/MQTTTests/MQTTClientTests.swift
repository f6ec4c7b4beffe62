import Foundation
import Logging
import MQTT
import MQTTTestSupport
import Testing

/// Every test here starts its own mosquitto on a free loopback port.
@Suite("MQTT client against a real mosquitto")
struct MQTTClientTests {
    func makeClient(
        _ broker: TestBroker,
        _ clientID: String,
        url: BrokerURL? = nil,
        _ configure: (inout MQTTConfiguration) -> Void = { _ in }
    ) throws -> MQTTClient {
        var configuration = MQTTConfiguration(broker: url ?? broker.url, clientID: clientID)
        configure(&configuration)
        var logger = Logger(label: clientID)
        if ProcessInfo.processInfo.environment["MQTT_TEST_TRACE"] != nil { logger.logLevel = .trace }
        return try MQTTClient(configuration: configuration, logger: logger)
    }

    @Test(arguments: MQTTQoS.allCases)
    func roundTrip(qos: MQTTQoS) async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("roundtrip")
        let subscriber = try makeClient(broker, "\(prefix)-sub")
        let publisher = try makeClient(broker, "\(prefix)-pub")
        let inbox = MessageInbox(subscriber)
        try await withRunning([subscriber, publisher]) {
            let granted = try await subscriber.subscribe(to: ["\(prefix)/a"], qos: qos)
            #expect(granted == [qos])
            try await publisher.publish("hello at \(qos)", to: "\(prefix)/a", qos: qos)
            let message = try await inbox.next()
            #expect(message.topic == "\(prefix)/a")
            #expect(message.payloadString == "hello at \(qos)")
            #expect(message.qos == qos)
            #expect(!message.retain)
        }
    }

    @Test(arguments: [MQTTConfiguration.ProtocolVersion.v311, .v5])
    func retainedMessageReachesLateSubscriber(version: MQTTConfiguration.ProtocolVersion) async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("retained")
        let publisher = try makeClient(broker, "\(prefix)-pub") { $0.protocolVersion = version }
        try await withRunning([publisher]) {
            try await publisher.publish("on", to: "\(prefix)/state", qos: .atLeastOnce, retain: true)
        }
        let late = try makeClient(broker, "\(prefix)-late") { $0.protocolVersion = version }
        let inbox = MessageInbox(late)
        try await withRunning([late]) {
            try await late.subscribe(to: ["\(prefix)/#"])
            let message = try await inbox.next()
            #expect(message.topic == "\(prefix)/state")
            #expect(message.payloadString == "on")
            #expect(message.retain)
        }
    }

    @Test func willIsPublishedWhenClientIsKilled() async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("will")
        let observer = try makeClient(broker, "\(prefix)-observer")
        let inbox = MessageInbox(observer)
        try await withRunning([observer]) {
            try await observer.subscribe(to: ["\(prefix)/status"])
            let child = try ChildProcess(
                builtProductPath("mqtt-test-client"),
                [
                    "--broker", broker.url.description, "--client-id", "\(prefix)-child",
                    "--will-topic", "\(prefix)/status", "--will-payload", "offline",
                ]
            )
            try await child.waitForLine("ready")
            child.signal(SIGKILL)
            _ = await child.waitForExit()
            let will = try await inbox.next()
            #expect(will.topic == "\(prefix)/status")
            #expect(will.payloadString == "offline")
        }
        // The will is retained: a newcomer sees it too.
        let newcomer = try makeClient(broker, "\(prefix)-newcomer")
        let newcomerInbox = MessageInbox(newcomer)
        try await withRunning([newcomer]) {
            try await newcomer.subscribe(to: ["\(prefix)/status"])
            let message = try await newcomerInbox.next()
            #expect(message.payloadString == "offline")
            #expect(message.retain)
        }
    }

    @Test(arguments: [MQTTConfiguration.ProtocolVersion.v311, .v5])
    func persistentSessionKeepsMessagesWhileOffline(version: MQTTConfiguration.ProtocolVersion) async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("session")
        let persistent: (inout MQTTConfiguration) -> Void = {
            $0.cleanSession = false
            $0.protocolVersion = version
        }
        let first = try makeClient(broker, "\(prefix)-engine", persistent)
        try await withRunning([first]) {
            try await first.subscribe(to: ["\(prefix)/readings/#"], qos: .atLeastOnce)
        }
        let publisher = try makeClient(broker, "\(prefix)-pub")
        try await withRunning([publisher]) {
            for index in 0..<1500 {
                try await publisher.publish("\(index)", to: "\(prefix)/readings/\(index % 7)", qos: .atLeastOnce)
            }
        }
        let second = try makeClient(broker, "\(prefix)-engine", persistent)
        let events = second.connectionEvents()
        let inbox = MessageInbox(second)
        try await withRunning([second]) {
            var iterator = events.makeAsyncIterator()
            #expect(await iterator.next() == .connected(sessionPresent: true))
            let received = try await inbox.next(1500)
            #expect(received.map(\.payloadString) == (0..<1500).map { "\($0)" })
        }
    }

    @Test func reconnectsAndResubscribesAfterBrokerKill() async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("restart")
        let subscriber = try makeClient(broker, "\(prefix)-sub") {
            $0.reconnectDelayMinimumSeconds = 1
            $0.reconnectDelayMaximumSeconds = 2
        }
        let publisher = try makeClient(broker, "\(prefix)-pub") { $0.reconnectDelayMaximumSeconds = 2 }
        let inbox = MessageInbox(subscriber)
        let events = subscriber.connectionEvents()
        try await withRunning([subscriber, publisher]) {
            var iterator = events.makeAsyncIterator()
            #expect(await iterator.next() == .connected(sessionPresent: false))
            try await subscriber.subscribe(to: ["\(prefix)/x"])
            try await broker.restart()
            let lost = await iterator.next()
            guard case .disconnected = lost else {
                Issue.record("expected a disconnect, got \(String(describing: lost))")
                return
            }
            // The restarted broker has no session: only our resubscription brings the messages back.
            #expect(await iterator.next() == .connected(sessionPresent: false))
            // SUBACK of a barrier subscription: the broker handles one client's packets in order,
            // so the resubscription sent on connect is in place once this returns.
            try await subscriber.subscribe(to: ["\(prefix)/barrier"])
            try await publisher.waitUntilConnected()
            try await publisher.publish("after restart", to: "\(prefix)/x", qos: .atLeastOnce)
            let message = try await inbox.next()
            #expect(message.payloadString == "after restart")
        }
    }

    @Test func connectsWhenTheBrokerStartsLater() async throws {
        let broker = try await TestBroker()
        broker.stop()
        let prefix = uniqueTopicPrefix("late-broker")
        let client = try makeClient(broker, "\(prefix)-client") { $0.reconnectDelayMaximumSeconds = 1 }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            #expect(!client.isConnected)
            try await broker.start()
            try await withTimeout(.seconds(20), "reconnect") { try await client.waitUntilConnected() }
            group.cancelAll()
        }
    }

    @Test(arguments: [MQTTConfiguration.ProtocolVersion.v311, .v5])
    func wrongPasswordIsAClearError(version: MQTTConfiguration.ProtocolVersion) async throws {
        let directory = try TestBroker.makeDirectory()
        let passwords = try TestBroker.makePasswordFile(users: ["alice": "right"], in: directory)
        let broker = try await TestBroker(
            listenerConfiguration: "allow_anonymous false\npassword_file \(passwords)",
            directory: directory
        )
        let url = try BrokerURL(parsing: "mqtt://alice:wrong@127.0.0.1:\(broker.port)")
        let client = try makeClient(broker, uniqueTopicPrefix("badpass"), url: url) { $0.protocolVersion = version }
        let error = await #expect(throws: MQTTError.self) {
            try await withTimeout(.seconds(20), "refused connect") { try await client.run() }
        }
        #expect(error?.kind == .connectionRefused)
        #expect(
            error?.message.lowercased().contains("password") == true || error?.message.contains("authorized") == true
        )
        #expect(error?.message.contains("wrong") == false)

        let good = try BrokerURL(parsing: "mqtt://alice:right@127.0.0.1:\(broker.port)")
        let accepted = try makeClient(broker, uniqueTopicPrefix("goodpass"), url: good) { $0.protocolVersion = version }
        try await withRunning([accepted]) {}
    }

    @Test func aclDeniedPublishNeverReachesSubscribers() async throws {
        let directory = try TestBroker.makeDirectory()
        let prefix = uniqueTopicPrefix("acl")
        let passwords = try TestBroker.makePasswordFile(users: ["admin": "a", "sensor": "s"], in: directory)
        let acl = try TestBroker.makeACLFile(
            """
            user admin
            topic readwrite #

            user sensor
            topic write \(prefix)/sensors/#

            """,
            in: directory
        )
        let broker = try await TestBroker(
            listenerConfiguration: "allow_anonymous false\npassword_file \(passwords)\nacl_file \(acl)",
            directory: directory
        )
        let admin = try makeClient(
            broker,
            "\(prefix)-admin",
            url: try BrokerURL(parsing: "mqtt://admin:a@127.0.0.1:\(broker.port)")
        )
        let sensor = try makeClient(
            broker,
            "\(prefix)-sensor",
            url: try BrokerURL(parsing: "mqtt://sensor:s@127.0.0.1:\(broker.port)")
        )
        let inbox = MessageInbox(admin)
        try await withRunning([admin, sensor]) {
            try await admin.subscribe(to: ["\(prefix)/#"])
            do {
                try await sensor.publish("{\"state\":\"on\"}", to: "\(prefix)/actuators/fan/set", qos: .atLeastOnce)
            } catch let error as MQTTError {
                #expect(error.kind == .publishRejected)
            }
            // Packets of one client are handled in order: when the marker arrives, the denied message would have.
            try await sensor.publish("marker", to: "\(prefix)/sensors/marker", qos: .atLeastOnce)
            let first = try await inbox.next()
            #expect(first.topic == "\(prefix)/sensors/marker")
        }
    }

    @Test func tlsVerifiesTheCAAndTheHostName() async throws {
        let directory = try TestBroker.makeDirectory()
        let certificates = try TestCertificates(in: directory, hostNames: ["localhost"])
        let broker = try await TestBroker(
            listenerConfiguration: certificates.listenerConfiguration,
            directory: directory
        )
        let prefix = uniqueTopicPrefix("tls")

        let good = try makeClient(
            broker,
            "\(prefix)-good",
            url: try BrokerURL(parsing: "mqtts://localhost:\(broker.port)")
        ) {
            $0.tls = .init(caFile: certificates.caCertificate)
        }
        let inbox = MessageInbox(good)
        try await withRunning([good]) {
            try await good.subscribe(to: ["\(prefix)/t"])
            try await good.publish("secure", to: "\(prefix)/t")
            #expect(try await inbox.next().payloadString == "secure")
        }

        let wrongCA = try makeClient(
            broker,
            "\(prefix)-wrong-ca",
            url: try BrokerURL(parsing: "mqtts://localhost:\(broker.port)")
        ) {
            $0.tls = .init(caFile: certificates.otherCACertificate)
        }
        let caError = await #expect(throws: MQTTError.self) {
            try await withTimeout(.seconds(20), "TLS refusal") { try await wrongCA.run() }
        }
        #expect(caError?.kind == .connectionFailed)
        #expect(caError?.message.contains("TLS") == true || caError?.message.contains("certificate") == true)

        let wrongHost = try makeClient(
            broker,
            "\(prefix)-wrong-host",
            url: try BrokerURL(parsing: "mqtts://127.0.0.1:\(broker.port)")
        ) {
            $0.tls = .init(caFile: certificates.caCertificate)
        }
        let hostError = await #expect(throws: MQTTError.self) {
            try await withTimeout(.seconds(20), "host name refusal") { try await wrongHost.run() }
        }
        #expect(hostError?.kind == .connectionFailed)
    }

    @Test func aBrokerRequiringClientCertificatesRefusesClientsWithoutOne() async throws {
        let directory = try TestBroker.makeDirectory()
        let certificates = try TestCertificates(in: directory)
        let broker = try await TestBroker(
            listenerConfiguration: certificates.requireCertificateConfiguration,
            directory: directory
        )
        let prefix = uniqueTopicPrefix("mtls")
        let url = try BrokerURL(parsing: "mqtts://localhost:\(broker.port)")

        let withCertificate = try makeClient(broker, "\(prefix)-good", url: url) {
            $0.tls = .init(
                caFile: certificates.caCertificate,
                certificateFile: certificates.clientCertificate,
                keyFile: certificates.clientKey
            )
        }
        let inbox = MessageInbox(withCertificate)
        try await withRunning([withCertificate]) {
            try await withCertificate.subscribe(to: ["\(prefix)/t"])
            try await withCertificate.publish("mutual", to: "\(prefix)/t")
            #expect(try await inbox.next().payloadString == "mutual")
        }

        for (name, tls) in [
            ("no-cert", MQTTConfiguration.TLS(caFile: certificates.caCertificate)),
            (
                "stranger",
                MQTTConfiguration.TLS(
                    caFile: certificates.caCertificate,
                    certificateFile: certificates.strangerCertificate,
                    keyFile: certificates.strangerKey
                )
            ),
        ] {
            let refused = try makeClient(broker, "\(prefix)-\(name)", url: url) { $0.tls = tls }
            let running = Task { try await refused.run() }
            // The broker refuses the handshake, so the client never gets a CONNACK. (Usually libmosquitto
            // reports the TLS alert and the client fails for good; on a loaded machine the alert can be
            // lost to the connection reset and the client keeps retrying, so only "never connected" is
            // asserted, within a window many times a local handshake.)
            let connected = try? await withTimeout(.seconds(5), "\(name) connecting") {
                try await refused.waitUntilConnected()
                return true
            }
            #expect(connected == nil, "\(name) connected to a broker that requires a trusted client certificate")
            running.cancel()
            _ = await running.result
        }
    }

    @Test func wildcardsDeliverWhatTheyMatch() async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("wild")
        let subscriber = try makeClient(broker, "\(prefix)-sub")
        let publisher = try makeClient(broker, "\(prefix)-pub")
        let inbox = MessageInbox(subscriber)
        try await withRunning([subscriber, publisher]) {
            try await subscriber.subscribe(to: ["\(prefix)/+/temperature", "\(prefix)/house/#"])
            let topics = [
                "\(prefix)/a/temperature",  // + matches one level
                "\(prefix)/a/b/temperature",  // no: + is one level only
                "\(prefix)/house",  // # also matches the parent level
                "\(prefix)/house/x/y",  // # matches many levels
                "\(prefix)/other",  // no
                "\(prefix)//temperature",  // + matches an empty level
                "\(prefix)/house/end",
            ]
            for topic in topics {
                try await publisher.publish(topic, to: topic, qos: .atLeastOnce)
            }
            var received: [String] = []
            while received.last != "\(prefix)/house/end" {
                received.append(try await inbox.next().topic)
            }
            #expect(
                received == [
                    "\(prefix)/a/temperature", "\(prefix)/house", "\(prefix)/house/x/y", "\(prefix)//temperature",
                    "\(prefix)/house/end",
                ]
            )
        }
    }

    /// Topics written with escapes (`\0` is NUL) so test reports stay printable.
    @Test(arguments: ["a/+/b", "a/#", "#", "+", "", "a\\0b"])
    func publishingToAWildcardTopicIsRefused(escapedTopic: String) async throws {
        let topic = escapedTopic.replacingOccurrences(of: "\\0", with: "\u{0}")
        let broker = try await TestBroker()
        let client = try makeClient(broker, uniqueTopicPrefix("badtopic"))
        try await withRunning([client]) {
            let error = await #expect(throws: MQTTError.self) { try await client.publish("x", to: topic) }
            #expect(error?.kind == .invalidTopic)
        }
    }

    @Test(arguments: ["a/b#", "a/+b", "a/#/b", ""])
    func invalidFiltersAreRefused(filter: String) async throws {
        let broker = try await TestBroker()
        let client = try makeClient(broker, uniqueTopicPrefix("badfilter"))
        try await withRunning([client]) {
            let error = await #expect(throws: MQTTError.self) { try await client.subscribe(to: [filter]) }
            #expect(error?.kind == .invalidTopic)
        }
    }

    @Test func oneMegabytePayloadRoundTrips() async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("big")
        let subscriber = try makeClient(broker, "\(prefix)-sub")
        let publisher = try makeClient(broker, "\(prefix)-pub")
        let inbox = MessageInbox(subscriber)
        let payload = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await withRunning([subscriber, publisher]) {
            try await subscriber.subscribe(to: ["\(prefix)/blob"])
            try await publisher.publish(payload, to: "\(prefix)/blob", qos: .exactlyOnce)
            let message = try await inbox.next()
            #expect(message.payload == payload)
        }
    }

    @Test func payloadsOverTheMaximumAreRefused() async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("limit")
        let small = try makeClient(broker, "\(prefix)-small") { $0.maximumPayloadSize = 100 }
        let publisher = try makeClient(broker, "\(prefix)-pub")
        let inbox = MessageInbox(small)
        try await withRunning([small, publisher]) {
            let error = await #expect(throws: MQTTError.self) {
                try await small.publish([UInt8](repeating: 1, count: 101), to: "\(prefix)/x")
            }
            #expect(error?.kind == .payloadTooLarge)
            try await small.publish([UInt8](repeating: 1, count: 100), to: "\(prefix)/ok")

            try await small.subscribe(to: ["\(prefix)/in/#"])
            try await publisher.publish([UInt8](repeating: 2, count: 5000), to: "\(prefix)/in/huge")
            try await publisher.publish("fits", to: "\(prefix)/in/small")
            let message = try await inbox.next()
            #expect(message.topic == "\(prefix)/in/small")
            #expect(small.oversizeMessageCount == 1)
        }
    }

    @Test func unsubscribeStopsDelivery() async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("unsub")
        let subscriber = try makeClient(broker, "\(prefix)-sub")
        let publisher = try makeClient(broker, "\(prefix)-pub")
        let inbox = MessageInbox(subscriber)
        try await withRunning([subscriber, publisher]) {
            try await subscriber.subscribe(to: ["\(prefix)/a", "\(prefix)/marker"])
            try await publisher.publish("first", to: "\(prefix)/a")
            #expect(try await inbox.next().payloadString == "first")
            try await subscriber.unsubscribe(from: ["\(prefix)/a"])
            try await publisher.publish("second", to: "\(prefix)/a")
            try await publisher.publish("marker", to: "\(prefix)/marker")
            #expect(try await inbox.next().topic == "\(prefix)/marker")
        }
    }

    @Test func aQoS1PublishWhileDisconnectedIsSentOnReconnectNotFailed() async throws {
        let broker = try await TestBroker()
        let prefix = uniqueTopicPrefix("queued")
        let publisher = try makeClient(broker, "\(prefix)-pub") { $0.reconnectDelayMaximumSeconds = 1 }
        let events = publisher.connectionEvents()
        try await withRunning([publisher]) {
            var iterator = events.makeAsyncIterator()
            _ = await iterator.next()
            broker.stop()
            guard case .disconnected = await iterator.next() else {
                Issue.record("expected a disconnect")
                return
            }
            // Publish while there is no connection: it returns once the broker acknowledges after reconnect.
            // The broker stays down until the task is at its publish, so the publish is issued while disconnected.
            let (publishing, publishingStarted) = AsyncStream.makeStream(of: Void.self)
            let published = Task {
                publishingStarted.yield()
                try await publisher.publish("kept", to: "\(prefix)/state", qos: .atLeastOnce, retain: true)
            }
            for await _ in publishing { break }
            #expect(!publisher.isConnected)
            try await broker.start()
            try await withTimeout(.seconds(20), "queued publish") { try await published.value }
        }
        let reader = try makeClient(broker, "\(prefix)-reader")
        let inbox = MessageInbox(reader)
        try await withRunning([reader]) {
            try await reader.subscribe(to: ["\(prefix)/state"])
            #expect(try await inbox.next().payloadString == "kept")
        }
    }

    @Test func operationsBeforeRunFailClearly() async throws {
        let client = try MQTTClient(configuration: MQTTConfiguration(broker: BrokerURL(host: "127.0.0.1", port: 9)))
        let error = await #expect(throws: MQTTError.self) { try await client.publish("x", to: "a", qos: .atMostOnce) }
        #expect(error?.kind == .notConnected)
    }
}
