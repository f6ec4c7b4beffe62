import Foundation
import MQTT
import MQTTTestSupport
import Synchronization

/// A real `nats-server` for one test, with JetStream, on private loopback ports; stopped by PID. It can be
/// killed (-9) and started again on the same ports with the same store, and it can be one node of a cluster.
public final class TestNATSServer: Sendable {
    /// The port clients connect to.
    public let clientPort: Int
    /// The port of its MQTT 3.1.1 listener, when it has one.
    public let mqttPort: Int?
    /// The port other nodes route to, when it is a cluster node.
    public let clusterPort: Int?
    /// Its directory: config, JetStream store.
    public let directory: String
    private let process = Mutex<ChildProcess?>(nil)

    /// `nats://127.0.0.1:PORT`.
    public var url: String { "nats://127.0.0.1:\(clientPort)" }

    /// The MQTT listener's URL, when it has one.
    public var mqttURL: BrokerURL? { mqttPort.map { BrokerURL(host: "127.0.0.1", port: $0) } }

    /// Writes a config and starts the server; returns once it logged that it is ready.
    ///
    /// `extraConfiguration` is appended (subject mappings, say). A cluster: make the nodes' ports first (`TestNATSServer.clusterPorts(3)`) and pass all of them to
    /// each node as `cluster`, with this node's index.
    public init(
        mqtt: Bool = false,
        cluster: (ports: [(client: Int, route: Int)], index: Int)? = nil,
        extraConfiguration: String = ""
    ) async throws {
        let directory = try TestBroker.makeDirectory()
        self.directory = directory
        self.clusterPort = cluster.map { $0.ports[$0.index].route }
        // Another test's server can take a free port between our check and this server's bind: a single
        // node tries other ports (a cluster node's ports are in its peers' configurations: it fails clearly).
        var attempt = 0
        while true {
            let ports = try Self.freePorts(2)
            let clientPort = cluster.map { $0.ports[$0.index].client } ?? ports[0]
            let mqttPort = mqtt ? ports[1] : nil
            var configuration = """
                listen: 127.0.0.1:\(clientPort)
                server_name: n\(clientPort)
                jetstream { store_dir: "\(directory)/jetstream" }

                """
            if let mqttPort { configuration += "mqtt { listen: 127.0.0.1:\(mqttPort) }\n" }
            if let cluster {
                let routes = cluster.ports.map { "nats-route://127.0.0.1:\($0.route)" }.joined(separator: ", ")
                configuration += """
                    cluster {
                      name: test-cluster
                      listen: 127.0.0.1:\(cluster.ports[cluster.index].route)
                      routes: [\(routes)]
                    }

                    """
            }
            configuration += extraConfiguration + "\n"
            try configuration.write(toFile: directory + "/nats.conf", atomically: true, encoding: .utf8)
            let child = try ChildProcess("nats-server", ["-c", directory + "/nats.conf"])
            do {
                if cluster == nil { try await Self.waitUntilReady(child, port: clientPort) }
                self.clientPort = clientPort
                self.mqttPort = mqttPort
                process.withLock { $0 = child }
                return
            } catch let error as TestBrokerError
                where error.description.contains("address already in use") && attempt < 5
            {
                attempt += 1
                child.signal(SIGKILL)
                _ = await child.waitForExit()
            }
        }
    }

    /// Starts a server with a whole configuration the test wrote (a shipped one with its ports replaced, say),
    /// without waiting for it to be ready (a cluster node waits for its peers: `waitUntilReady()`).
    public init(configuration: String, clientPort: Int, mqttPort: Int?, clusterPort: Int?) async throws {
        let directory = try TestBroker.makeDirectory()
        self.directory = directory
        self.clientPort = clientPort
        self.mqttPort = mqttPort
        self.clusterPort = clusterPort
        try configuration.replacingOccurrences(of: "$DIRECTORY", with: directory)
            .write(toFile: directory + "/nats.conf", atomically: true, encoding: .utf8)
        try await start(waitingForReady: false)
    }

    /// Free ports for the nodes of a cluster of `count`.
    public static func clusterPorts(_ count: Int) throws -> [(client: Int, route: Int)] {
        let ports = try freePorts(count * 2)
        return (0..<count).map { (ports[2 * $0], ports[2 * $0 + 1]) }
    }

    /// `count` free ports, all different (each one alone is free; two picks can be the same port).
    public static func freePorts(_ count: Int) throws -> [Int] {
        var ports: [Int] = []
        while ports.count < count {
            let port = try TestBroker.freePort()
            if !ports.contains(port) { ports.append(port) }
        }
        return ports
    }

    /// Starts the server (again) with its config and store. A cluster node is ready once its peers are up:
    /// then wait with `waitUntilReady()`.
    public func start(waitingForReady: Bool = true) async throws {
        let child = try ChildProcess("nats-server", ["-c", directory + "/nats.conf"])
        process.withLock { $0 = child }
        if waitingForReady { try await waitUntilReady() }
    }

    /// Waits until the server logged that it is ready for clients.
    public func waitUntilReady() async throws {
        guard let child = process.withLock({ $0 }) else { throw TestBrokerError("nats-server is not running") }
        try await Self.waitUntilReady(child, port: clientPort)
    }

    private static func waitUntilReady(_ child: ChildProcess, port: Int) async throws {
        try await withTimeout(.seconds(30), "nats-server on \(port) ready") {
            while !child.standardError.contains("Server is ready") {
                let log = child.standardError
                if let fatal = log.split(separator: "\n").first(where: { $0.contains("[FTL]") }) {
                    throw TestBrokerError("nats-server on \(port) could not start: \(fatal)")
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// The server's process id while it runs (for its CPU time in /proc).
    public var processID: Int32? { process.withLock { $0 }?.pid }

    /// What the server logged so far.
    public var log: String { process.withLock { $0 }?.standardError ?? "" }

    /// Stops the server with SIGTERM and waits for it to exit.
    public func stop() async {
        await end(with: SIGTERM)
    }

    /// Kills the server with SIGKILL (no clean shutdown) and waits for it to exit.
    public func kill() async {
        await end(with: SIGKILL)
    }

    private func end(with signal: Int32) async {
        guard
            let child = process.withLock({ value in
                defer { value = nil }
                return value
            })
        else { return }
        child.signal(signal)
        _ = await child.waitForExit(killingAfter: .seconds(10))
    }
}
