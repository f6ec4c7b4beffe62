import Foundation
import MQTT
import MQTTTestSupport

/// A real broker, the real `rules-engine run`, an observer that sees every command and a publisher
/// for readings: what a user's setup looks like, in one test.
final class EngineHarness: Sendable {
    let broker: TestBroker
    let prefix: String
    let rulesDirectory: String
    let stateDirectory: String
    let engineClientID: String
    let observer: MQTTClient
    let publisher: MQTTClient
    let commands: MessageInbox
    private let observerTask: Task<Void, any Error>
    private let publisherTask: Task<Void, any Error>

    /// Starts a broker and the observer/publisher clients; the rules are written with `{prefix}` replaced.
    init(_ name: String, rules: String) async throws {
        broker = try await TestBroker()
        prefix = uniqueTopicPrefix(name)
        engineClientID = "\(prefix)-engine"
        rulesDirectory = try TestBroker.makeDirectory()
        stateDirectory = try TestBroker.makeDirectory()
        observer = try MQTTClient(configuration: MQTTConfiguration(broker: broker.url, clientID: "\(prefix)-observer"))
        var publishing = MQTTConfiguration(broker: broker.url, clientID: "\(prefix)-publisher")
        publishing.maximumPayloadSize = 8 << 20
        publisher = try MQTTClient(configuration: publishing)
        commands = MessageInbox(observer)
        let (observer, publisher) = (observer, publisher)
        observerTask = Task { try await observer.run() }
        publisherTask = Task { try await publisher.run() }
        try await writeRules(rules)
        try await withTimeout(.seconds(20), "observer connects") { try await observer.waitUntilConnected() }
        try await observer.subscribe(to: ["\(prefix)/actuators/+/+/set", "pipeline/engine/\(engineClientID)/status"])
        try await withTimeout(.seconds(20), "publisher connects") { try await publisher.waitUntilConnected() }
    }

    deinit {
        observerTask.cancel()
        publisherTask.cancel()
    }

    /// Writes `rules.yaml` atomically (temporary file + rename, as editors do).
    func writeRules(_ text: String, file: String = "rules.yaml") async throws {
        let path = rulesDirectory + "/" + file
        let temporary = rulesDirectory + "/.\(file).tmp"
        try text.replacingOccurrences(of: "{prefix}", with: prefix).write(
            toFile: temporary,
            atomically: false,
            encoding: .utf8
        )
        guard rename(temporary, path) == 0 else { throw TestBrokerError("rename failed") }
    }

    /// Starts `rules-engine run` and waits for `ready`.
    func startEngine(stateDir: Bool = false, extraArguments: [String] = []) async throws -> ChildProcess {
        var arguments = [
            "run", "--rules", rulesDirectory, "--broker", broker.url.description, "--client-id", engineClientID,
            "--log-level", "debug",
        ]
        if stateDir { arguments += ["--state-dir", stateDirectory] }
        let engine = try ChildProcess(builtProductPath("rules-engine"), arguments + extraArguments)
        try await engine.waitForLine("ready")
        return engine
    }

    /// Publishes a reading at QoS 1 to `{prefix}/sensors/{device}/{quantity}`.
    func reading(_ device: String, _ payload: String, quantity: String = "temperature") async throws {
        try await publisher.publish(payload, to: "\(prefix)/sensors/\(device)/\(quantity)", qos: .atLeastOnce)
    }

    /// The next command (skipping presence messages), as `device/actuator state`.
    func nextCommand(timeout: Duration = .seconds(20)) async throws -> String {
        let message = try await commands.first(timeout: timeout) { $0.topic.hasSuffix("/set") }
        return Self.describe(message)
    }

    /// Waits for the engine's retained presence to become `state`.
    func waitForPresence(_ state: String) async throws {
        _ = try await commands.first { $0.topic.hasSuffix("/status") && $0.payloadString == state }
    }

    static func describe(_ message: MQTTMessage) -> String {
        let levels = message.topic.split(separator: "/")
        let state = JSONValueText.state(in: message.payloadString)
        return "\(levels[levels.count - 3])/\(levels[levels.count - 2]) \(state)"
    }

    /// SIGTERM and the exit status.
    func stop(_ engine: ChildProcess) async -> Int32 {
        engine.signal(SIGTERM)
        return await engine.waitForExit()
    }
}

enum JSONValueText {
    /// The `"state"` of a JSON object payload, or the payload itself.
    static func state(in payload: String) -> String {
        guard let data = payload.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let state = object["state"] as? String
        else { return payload }
        return state
    }
}
