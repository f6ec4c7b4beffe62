import Foundation
import MQTT
import MQTTTestSupport
import Testing

/// The system this project grew from: RabbitMQ (Debian's 3.10) with its MQTT plugin, and AMQP producers and
/// consumers (`pika`). RabbitMQ closes an MQTT 5 CONNECT without a CONNACK: every program falls back to 3.1.1
/// with no flag.
@Suite("RabbitMQ, live")
struct RabbitMQTests {
    /// Publishes `body` to `amq.topic` with `routingKey` over AMQP.
    static func amqpPublish(port: Int, routingKey: String, body: String) async throws {
        let script = """
            import pika, sys
            connection = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=int(sys.argv[1])))
            channel = connection.channel()
            channel.basic_publish(exchange="amq.topic", routing_key=sys.argv[2], body=sys.argv[3].encode())
            connection.close()
            """
        let python = try ChildProcess("/usr/bin/python3", ["-c", script, "\(port)", routingKey, body])
        let status = await python.waitForExit(killingAfter: .seconds(60))
        guard status == 0 else { throw TestBrokerError("pika publish failed: \(python.standardError)") }
    }

    /// A pika consumer on a queue bound to `amq.topic` with `bindingKey`: prints `ready` once bound, then each
    /// message as `ROUTING_KEY BODY`.
    static func amqpConsumer(port: Int, bindingKey: String) async throws -> ChildProcess {
        let script = """
            import pika, sys
            connection = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=int(sys.argv[1])))
            channel = connection.channel()
            queue = channel.queue_declare(queue="", exclusive=True).method.queue
            channel.queue_bind(exchange="amq.topic", queue=queue, routing_key=sys.argv[2])
            print("ready", flush=True)
            for method, properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=60):
                if method is None:
                    break
                print(method.routing_key, body.decode(), flush=True)
            """
        let consumer = try ChildProcess("/usr/bin/python3", ["-c", script, "\(port)", bindingKey])
        try await consumer.waitForLine("ready", timeout: .seconds(60))
        return consumer
    }

    /// Waits for a line of `process` that starts with `prefix`.
    static func line(of process: ChildProcess, startingWith prefix: String) async throws -> String {
        try await withTimeout(.seconds(30), "a line starting with '\(prefix)'") {
            while true {
                if let line = process.output.first(where: { $0.hasPrefix(prefix) }) { return line }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// One RabbitMQ for both (its Erlang VM takes seconds of CPU to boot): the engine, then the simulator.
    @Test func theEngineAndTheSimulatorRunAgainstRabbitMQWithNoFlag() async throws {
        let broker = try await TestRabbitMQ()
        try await theEngineRuns(against: broker)
        try await theSimulatorRuns(against: broker)
    }

    /// The engine with no version flag: an AMQP reading to `amq.topic` is evaluated, its command reaches an AMQP
    /// consumer, and a reading published while the engine is down is evaluated when it returns.
    func theEngineRuns(against broker: TestRabbitMQ) async throws {
        let prefix = uniqueTopicPrefix("rabbit")
        let rules = try TestBroker.makeDirectory()
        try """
        rules:
          - id: cooling
            topic: "\(prefix)/sensors/{rack}/temperature"
            above: 30
            clear: 28
            on_fire:
              - publish: {topic: "\(prefix)/actuators/{rack}/cooling/set", payload: {state: "on"}}
            on_clear:
              - publish: {topic: "\(prefix)/actuators/{rack}/cooling/set", payload: {state: "off"}}
        """.write(toFile: rules + "/rules.yaml", atomically: true, encoding: .utf8)
        let arguments = [
            "run", "--rules", rules, "--broker", broker.url.description, "--client-id", "\(prefix)-engine",
            "--log-level", "debug",
        ]
        let consumer = try await Self.amqpConsumer(port: broker.amqpPort, bindingKey: "\(prefix).actuators.#")
        defer { consumer.signal(SIGKILL) }
        let engine = try ChildProcess(builtProductPath("rules-engine"), arguments)
        try await engine.waitForLine("ready", timeout: .seconds(60))
        #expect(engine.standardError.contains("connecting again with MQTT 3.1.1"), "\(engine.standardError)")
        // MQTT topic levels are AMQP routing key words: `/` ↔ `.`.
        try await Self.amqpPublish(
            port: broker.amqpPort,
            routingKey: "\(prefix).sensors.rack-1.temperature",
            body: #"{"value": 31.5}"#
        )
        let on = try await Self.line(of: consumer, startingWith: "\(prefix).actuators.rack-1.cooling.set")
        #expect(on.contains(#""state":"on""#), "\(on)")
        engine.signal(SIGTERM)
        #expect(await engine.waitForExit() == 0)
        // Published while the engine is down: its session is a durable queue that keeps it.
        try await Self.amqpPublish(
            port: broker.amqpPort,
            routingKey: "\(prefix).sensors.rack-2.temperature",
            body: #"{"value": 35}"#
        )
        let again = try ChildProcess(builtProductPath("rules-engine"), arguments)
        try await again.waitForLine("ready", timeout: .seconds(60))
        let on2 = try await Self.line(of: consumer, startingWith: "\(prefix).actuators.rack-2.cooling.set")
        #expect(on2.contains(#""reason":"value 35 above 30""#), "\(on2)")
        again.signal(SIGTERM)
        #expect(await again.waitForExit() == 0)
    }

    /// The simulator with no version flag publishes its readings through RabbitMQ.
    func theSimulatorRuns(against broker: TestRabbitMQ) async throws {
        let consumer = try await Self.amqpConsumer(port: broker.amqpPort, bindingKey: "sensors.#")
        defer { consumer.signal(SIGKILL) }
        let simulator = try ChildProcess(
            builtProductPath("sensor-sim"),
            [
                "run", RulesEngineCommandTests.packageRoot + "/Devices/server-room.yaml", "--broker",
                broker.url.description, "--rate", "10", "--log-level", "info",
            ]
        )
        try await simulator.waitForLine("ready", timeout: .seconds(60))
        let reading = try await Self.line(of: consumer, startingWith: "sensors.rack-a1.temperature")
        #expect(reading.contains(#""value":"#), "\(reading)")
        simulator.signal(SIGTERM)
        #expect(await simulator.waitForExit() == 0)
        // An explicit `--mqtt-version 5` is never downgraded: it does not connect, and says so when its time is up.
        let strict = try ChildProcess(
            builtProductPath("sensor-sim"),
            [
                "run", RulesEngineCommandTests.packageRoot + "/Devices/server-room.yaml", "--broker",
                broker.url.description, "--mqtt-version", "5", "--duration", "3s",
            ]
        )
        #expect(await strict.waitForExit(killingAfter: .seconds(60)) == 1)
        #expect(strict.standardError.contains("was not reached within --duration 3s"), "\(strict.standardError)")
        #expect(!strict.standardError.contains("connecting again with MQTT 3.1.1"))
    }
}
