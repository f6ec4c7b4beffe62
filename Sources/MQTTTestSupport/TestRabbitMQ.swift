import Foundation
import MQTT
import Synchronization

/// A real RabbitMQ (Debian's `rabbitmq-server`) with its MQTT plugin, for tests: its own node name, config file,
/// data folder and epmd, on free loopback ports. Stopped by process group (the script, the Erlang VM and the
/// helpers it starts), and its epmd by PID.
public final class TestRabbitMQ: Sendable {
    /// The MQTT listener's port.
    public let mqttPort: Int
    /// The AMQP listener's port (`pika` connects here).
    public let amqpPort: Int
    public let directory: String
    private let epmdPort: Int
    private let distributionPort: Int
    private let nodeName: String
    private let processes = Mutex<(server: pid_t?, epmd: pid_t?)>((nil, nil))

    /// Starts the broker and waits until its MQTT and AMQP listeners accept connections.
    public init() async throws {
        directory = try TestBroker.makeDirectory()
        mqttPort = try TestBroker.freePort()
        amqpPort = try TestBroker.freePort()
        epmdPort = try TestBroker.freePort()
        distributionPort = try TestBroker.freePort()
        nodeName = "sp-test-\(getpid())-\(mqttPort)@localhost"
        let configuration = """
            listeners.tcp.default = 127.0.0.1:\(amqpPort)
            mqtt.listeners.tcp.default = 127.0.0.1:\(mqttPort)
            mqtt.allow_anonymous = true
            loopback_users = none
            """
        try configuration.write(toFile: directory + "/rabbitmq.conf", atomically: true, encoding: .utf8)
        try "[rabbitmq_mqtt].\n".write(toFile: directory + "/enabled_plugins", atomically: true, encoding: .utf8)
        try await start()
    }

    deinit { stop() }

    /// `mqtt://127.0.0.1:PORT`.
    public var url: BrokerURL { BrokerURL(host: "127.0.0.1", port: mqttPort) }

    /// What the broker printed so far.
    public var log: String { (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? "(no log)" }

    /// Starts (again) on the same ports and data folder, so durable queues (MQTT sessions) survive a restart.
    public func start() async throws {
        if processes.withLock({ $0.epmd == nil }) {
            let epmd = try TestBroker.spawn(
                ["/usr/bin/epmd", "-port", "\(epmdPort)"],
                outputPath: directory + "/epmd.log"
            )
            processes.withLock { $0.epmd = epmd }
        }
        let server = try TestBroker.spawn(
            ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
            outputPath: directory + "/server.log",
            environment: [
                "RABBITMQ_NODENAME": nodeName, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": "\(amqpPort)", "RABBITMQ_DIST_PORT": "\(distributionPort)",
                "ERL_EPMD_PORT": "\(epmdPort)", "RABBITMQ_CONFIG_FILE": directory + "/rabbitmq.conf",
                "RABBITMQ_ENABLED_PLUGINS_FILE": directory + "/enabled_plugins",
                "RABBITMQ_MNESIA_BASE": directory + "/mnesia", "RABBITMQ_LOG_BASE": directory + "/log",
                "RABBITMQ_PID_FILE": directory + "/rabbitmq.pid", "HOME": directory,
                // One scheduler: the VM's boot would otherwise take both cores from the tests beside it.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+S 1:1 +SDcpu 1:1 +SDio 1 +A 1",
            ],
            newProcessGroup: true
        )
        processes.withLock { $0.server = server }
        // The Erlang VM takes 10-20 s to boot the broker and its plugin.
        let deadline = ContinuousClock.now + .seconds(120)
        while !(TestBroker.acceptsConnections(port: mqttPort) && TestBroker.acceptsConnections(port: amqpPort)) {
            var status: Int32 = 0
            if waitpid(server, &status, WNOHANG) == server {
                stop()
                throw TestBrokerError("rabbitmq-server exited at start: \(log)")
            }
            guard ContinuousClock.now < deadline else {
                stop()
                throw TestBrokerError("rabbitmq-server did not listen within 120 s: \(log)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Stops the broker (SIGTERM to its process group, SIGKILL after 20 s) and its epmd, and waits for them.
    public func stop() {
        let (server, epmd) = processes.withLock { value in
            defer { value = (nil, nil) }
            return value
        }
        if let server { Self.stopGroup(server, signal: SIGTERM, grace: .seconds(20)) }
        if let epmd {
            Glibc.kill(epmd, SIGKILL)
            var status: Int32 = 0
            waitpid(epmd, &status, 0)
        }
    }

    /// Kills the broker with SIGKILL (no clean shutdown) and waits until every process of its group is gone.
    public func kill() {
        let server = processes.withLock { value in
            defer { value.server = nil }
            return value.server
        }
        if let server { Self.stopGroup(server, signal: SIGKILL, grace: .seconds(5)) }
    }

    /// Signals the process group led by `leader`, reaps the leader, and waits until the group is empty (the
    /// Erlang VM is the leader's child); SIGKILL to the group after `grace`.
    private static func stopGroup(_ leader: pid_t, signal: Int32, grace: Duration) {
        Glibc.kill(-leader, signal)
        let deadline = ContinuousClock.now + grace
        var status: Int32 = 0
        var reaped = false
        while ContinuousClock.now < deadline {
            if !reaped, waitpid(leader, &status, WNOHANG) == leader { reaped = true }
            if reaped, Glibc.kill(-leader, 0) != 0 { return }
            usleep(50_000)
        }
        Glibc.kill(-leader, SIGKILL)
        if !reaped { waitpid(leader, &status, 0) }
        while Glibc.kill(-leader, 0) == 0 { usleep(50_000) }
    }
}
