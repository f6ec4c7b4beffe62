import Logging
import MQTT
import NATS
import NATSTestSupport
import PartitionState
import Rules
import Testing

/// Partition snapshots against a real `nats-server`: a pending `for` survives a change of owner through a
/// snapshot in several chunks, and a deposed owner's late save is refused.
@Suite("Partition snapshots, live")
struct PartitionSnapshotStoreTests {
    static let rules = """
        rules:
          - id: hot
            topic: "sensors/{device}/temperature"
            above: 30
            for: 1m
        """

    static func fires(_ events: [EvaluationEvent]) -> [String] {
        events.compactMap { event in
            guard case .transition(let record) = event, record.transition == .fire else { return nil }
            return record.ruleID + " " + record.labels.map { "\($0)" }.joined(separator: ",")
        }
    }

    @Test func aPendingForSurvivesAChangeOfOwnerThroughAChunkedSnapshot() async throws {
        let server = try await TestNATSServer()
        let connection = try await NATSConnection.connect(
            NATSConfiguration(servers: [server.url], name: "snapshots"),
            logger: Logger(label: "snapshot-test")
        )
        let store = try await PartitionSnapshotStore(connection: connection, chunkSize: 64)
        #expect(try await store.load(partition: 5) == nil)

        // The old owner: d1 and d2 go above 30 at t0 = 1,000,000; their `for: 1m` is pending.
        let ruleSet = try RuleLoader.load([RuleSource(path: "rules.yaml", text: Self.rules)])
        var old = Evaluator(ruleSet: ruleSet)
        var events: [EvaluationEvent] = []
        let start: Int64 = 1_000_000
        for device in ["d1", "d2"] {
            old.process(
                Reading(topic: "sensors/\(device)/temperature", payload: Array("35".utf8), timestamp: start),
                into: &events
            )
        }
        let snapshot = PartitionSnapshot(
            partition: 5,
            epoch: 7,
            lastSequence: 42,
            time: start + 20_000,
            instances: old.snapshotAll()
        )
        let revision = try await store.save(snapshot, replacing: nil)

        // The new owner loads it, restores, and its clock reaches t0 + 1 min: both fire, on time.
        let (loaded, loadedRevision) = try #require(try await store.load(partition: 5))
        #expect(loaded == snapshot)
        #expect(loadedRevision == revision)
        var new = Evaluator(ruleSet: ruleSet)
        #expect(new.restore(loaded.instances, now: loaded.time) == 2)
        events = []
        new.advance(to: start + 59_999, into: &events)
        #expect(Self.fires(events).isEmpty)
        new.advance(to: start + 60_000, into: &events)
        #expect(Self.fires(events).count == 2, "\(events)")

        // The new owner saves under its epoch; the old owner's late save (naming the old revision) is refused.
        var newer = snapshot
        newer.epoch = 9
        newer.lastSequence = 50
        let newRevision = try await store.save(newer, replacing: loadedRevision)
        await #expect {
            _ = try await store.save(snapshot, replacing: revision)
        } throws: { error in
            guard case .fenced(let message) = error as? PartitionSnapshotError else { return false }
            return message.contains("epoch 7")
        }
        let current = try #require(try await store.load(partition: 5))
        #expect(current.snapshot.epoch == 9 && current.revision == newRevision)
        // Only the current snapshot's chunks are left.
        let bucket = try await connection.keyValue(bucket: "sensor-pipeline-snapshots")
        let chunks = try await bucket.keys().filter { $0.hasPrefix("chunk.") }
        #expect(chunks.count > 1, "a snapshot over 64 bytes is in several chunks")
        #expect(chunks.allSatisfy { $0.hasPrefix("chunk.5.9.") }, "\(chunks)")
        connection.close()
        await server.stop()
    }
}
