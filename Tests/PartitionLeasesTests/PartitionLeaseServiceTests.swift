import Foundation
import Logging
import MQTT
import NATS
import NATSTestSupport
import PartitionLeases
import Synchronization
import Testing

/// Lease services of several engines against a real `nats-server`: shares, hand-over, and takeover after a
/// death, with an in-process ledger that records any moment two engines owned one partition.
@Suite("Partition leases, live")
struct PartitionLeaseServiceTests {
    /// Who owns each partition, as the engines' delegates say; an acquire over a live owner is an overlap.
    final class Ledger: Sendable {
        struct State {
            var owner: [Int: String] = [:]
            var overlaps: [String] = []
            var epochs: [Int: [UInt64]] = [:]
        }
        let state = Mutex(State())

        func owners() -> [Int: String] { state.withLock { $0.owner } }
        func partitions(of engine: String) -> Set<Int> {
            Set(state.withLock { $0.owner.filter { $0.value == engine }.keys })
        }
    }

    struct Engine: PartitionLeaseDelegate {
        let name: String
        let ledger: Ledger

        func leaseAcquired(partition: Int, epoch: UInt64) async {
            ledger.state.withLock { state in
                if let other = state.owner[partition] {
                    state.overlaps.append("\(name) acquired \(partition) while \(other) owned it")
                }
                state.owner[partition] = name
                state.epochs[partition, default: []].append(epoch)
            }
        }

        func leaseLost(partition: Int, reason: String) {
            ledger.state.withLock { if $0.owner[partition] == name { $0.owner[partition] = nil } }
        }

        func leaseWillBeReleased(partition: Int, epoch: UInt64) async {
            ledger.state.withLock { if $0.owner[partition] == name { $0.owner[partition] = nil } }
        }
    }

    static let logger: Logger = {
        var logger = Logger(label: "lease-test")
        if let level = ProcessInfo.processInfo.environment["LEASE_TEST_LOG"] {
            logger.logLevel = Logger.Level(rawValue: level) ?? .info
        }
        return logger
    }()

    static func start(
        _ name: String,
        _ server: TestNATSServer,
        _ ledger: Ledger,
        in group: inout ThrowingTaskGroup<Void, any Error>
    ) async throws -> (PartitionLeaseService, NATSConnection) {
        let connection = try await NATSConnection.connect(
            NATSConfiguration(servers: [server.url], name: name, requestTimeout: .seconds(1)),
            logger: logger
        )
        let service = PartitionLeaseService(
            configuration: try PartitionLeaseConfiguration(partitions: 4, owner: name, ttl: .seconds(2)),
            connection: connection,
            delegate: Engine(name: name, ledger: ledger),
            logger: logger
        )
        group.addTask { try await service.run() }
        return (service, connection)
    }

    static func waitUntil(
        _ what: String,
        timeout: Duration = .seconds(20),
        _ condition: @escaping @Sendable () -> Bool
    )
        async throws
    {
        try await withTimeout(timeout, what) {
            while !condition() { try await Task.sleep(for: .milliseconds(20)) }
        }
    }

    @Test func twoEnginesShareTheNewOneGetsHalfAndADeadOnesPartitionsAreTakenOverInTime() async throws {
        let server = try await TestNATSServer()
        let ledger = Ledger()
        try await withThrowingTaskGroup(of: Void.self) { group in
            let (a, connectionA) = try await Self.start("engine-a", server, ledger, in: &group)
            try await Self.waitUntil("engine-a owning all 4") { ledger.partitions(of: "engine-a").count == 4 }
            #expect(a.ownedPartitions.count == 4)

            let (b, _) = try await Self.start("engine-b", server, ledger, in: &group)
            try await Self.waitUntil("2 and 2") {
                ledger.partitions(of: "engine-a").count == 2 && ledger.partitions(of: "engine-b").count == 2
            }
            #expect(Set(a.ownedPartitions.keys).isDisjoint(with: Set(b.ownedPartitions.keys)))

            // engine-a dies without a word: its connection goes, its renewals fail.
            let died = ContinuousClock.now
            connectionA.close()
            try await Self.waitUntil("engine-b owning all 4") { ledger.partitions(of: "engine-b").count == 4 }
            let takeover = ContinuousClock.now - died
            Self.logger.info("takeover after a death", metadata: ["seconds": "\(takeover)"])
            // TTL 2 s; renewals every 2/3 s; the server expires keys on its own schedule (about a second late).
            #expect(takeover < .seconds(6), "takeover took \(takeover)")
            #expect(a.ownedPartitions.isEmpty, "engine-a stopped counting its leases as its own")
            group.cancelAll()
        }
        let (overlaps, epochs) = ledger.state.withLock { ($0.overlaps, $0.epochs) }
        #expect(overlaps.isEmpty, "\(overlaps)")
        // Each new owner's epoch is greater than the previous owner's: a fencing token.
        for (partition, sequence) in epochs {
            #expect(
                sequence == sequence.sorted() && Set(sequence).count == sequence.count,
                "partition \(partition): \(sequence)"
            )
        }
        await server.stop()
    }

    /// At shutdown an engine hands its leases back at once: the other one need not wait for the TTL.
    @Test func aStoppingEngineHandsItsPartitionsOverWithoutWaitingForTheTTL() async throws {
        let server = try await TestNATSServer()
        let ledger = Ledger()
        try await withThrowingTaskGroup(of: Void.self) { group in
            _ = try await Self.start("engine-c", server, ledger, in: &group)
            try await Self.waitUntil("engine-c owning all 4") { ledger.partitions(of: "engine-c").count == 4 }
            group.cancelAll()
            try? await group.waitForAll()
        }
        #expect(ledger.owners().isEmpty, "every partition handed back: \(ledger.owners())")
        let connection = try await NATSConnection.connect(
            NATSConfiguration(servers: [server.url], name: "check"),
            logger: Self.logger
        )
        let leases = try await connection.keyValue(bucket: "sensor-pipeline-leases", ttl: .seconds(2))
        #expect(try await leases.keys().isEmpty)
        connection.close()
        await server.stop()
    }
}

/// Leases on a 3-node cluster (bucket with 3 replicas) survive the kill -9 of a server.
@Suite("Partition leases on a NATS cluster, live")
struct PartitionLeaseClusterTests {
    @Test func leasesStayWithTheirEngineWhenAServerIsKilled() async throws {
        let ports = try TestNATSServer.clusterPorts(3)
        var nodes: [TestNATSServer] = []
        for index in 0..<3 {
            nodes.append(try await TestNATSServer(cluster: (ports, index)))
        }
        for node in nodes { try await node.waitUntilReady() }
        let ledger = PartitionLeaseServiceTests.Ledger()
        let lost = Mutex<[String]>([])
        struct Recording: PartitionLeaseDelegate {
            let engine: PartitionLeaseServiceTests.Engine
            let lost: @Sendable (String) -> Void
            func leaseAcquired(partition: Int, epoch: UInt64) async {
                await engine.leaseAcquired(partition: partition, epoch: epoch)
            }
            func leaseLost(partition: Int, reason: String) {
                lost("\(partition): \(reason)")
                engine.leaseLost(partition: partition, reason: reason)
            }
            func leaseWillBeReleased(partition: Int, epoch: UInt64) async {
                await engine.leaseWillBeReleased(partition: partition, epoch: epoch)
            }
        }
        let connection = try await NATSConnection.connect(
            NATSConfiguration(servers: nodes.map(\.url), name: "engine-k", requestTimeout: .seconds(2)),
            logger: PartitionLeaseServiceTests.logger
        )
        let service = PartitionLeaseService(
            configuration: try PartitionLeaseConfiguration(
                partitions: 4,
                owner: "engine-k",
                ttl: .seconds(15),
                replicas: 3
            ),
            connection: connection,
            delegate: Recording(engine: .init(name: "engine-k", ledger: ledger)) { reason in
                lost.withLock { $0.append(reason) }
            },
            logger: PartitionLeaseServiceTests.logger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            try await PartitionLeaseServiceTests.waitUntil("engine-k owning all 4", timeout: .seconds(60)) {
                ledger.partitions(of: "engine-k").count == 4
            }
            // Kill the server it is connected to, then wait for a TTL's worth of confirmed renewals (3 rounds
            // per TTL, 4 leases each) through the others. The TTL is long (15 s: the lease counts as lost 11 s
            // after a renewal) because the stream's new leader is elected on 2 busy cores while other suites run.
            let connected = try #require(connection.connectedServer)
            let victim = try #require(nodes.first { connected.hasSuffix(":\($0.clientPort)") }, "\(connected)")
            await victim.kill()
            let before = service.renewalsConfirmed
            try await PartitionLeaseServiceTests.waitUntil("12 renewals after the kill", timeout: .seconds(90)) {
                service.renewalsConfirmed >= before + 12
            }
            #expect(ledger.partitions(of: "engine-k").count == 4, "owned after the kill: \(ledger.owners())")
            #expect(connection.connectedServer != connected, "the client failed over")
            group.cancelAll()
        }
        #expect(lost.withLock { $0 }.isEmpty, "leases lost while a server was killed: \(lost.withLock { $0 })")
        #expect(ledger.state.withLock { $0.overlaps }.isEmpty)
        connection.close()
        for node in nodes { await node.stop() }
    }
}
