import Foundation
import MQTTTestSupport
import Rules
import Testing

@testable import RulesEngineDaemon

/// The state directory's journal: what a `kill -9` at any point leaves behind must load back.
@Suite struct InstanceStateStoreTests {
    static func snapshot(_ labels: [String], phase: String) throws -> InstanceSnapshot {
        try JSONDecoder().decode(
            InstanceSnapshot.self,
            from: Data(
                #"{"ruleID":"r","definition":"d","labels":["\#(labels.joined(separator: "\",\""))"],"phase":"\#(phase)","recentTransitions":[]}"#
                    .utf8
            )
        )
    }

    @Test func sequencesInstancesAndAuditLinesRoundTripThroughCompaction() throws {
        let store = try InstanceStateStore(directory: try TestBroker.makeDirectory())
        for sequence in 1...5 { try store.append(.init(sequence: ("sensors/a", Int64(sequence)))) }
        try store.append(
            .init(
                instances: [try Self.snapshot(["a"], phase: "firing")],
                sequence: ("sensors/b", 7),
                auditLines: [#"{"event":"transition"}"#, #"{"event":"command"}"#]
            )
        )
        var saved = try store.load()
        #expect(saved.sequences == ["sensors/a": 5, "sensors/b": 7])
        #expect(saved.instances.map(\.phase) == [.firing])
        #expect(saved.lastAuditLines == [#"{"event":"transition"}"#, #"{"event":"command"}"#])

        try store.compact(instances: saved.instances, sequences: saved.sequences)
        try store.append(.init(sequence: ("sensors/a", 6)))
        saved = try store.load()
        #expect(saved.sequences == ["sensors/a": 6, "sensors/b": 7])
        #expect(saved.instances.map(\.phase) == [.firing])
        #expect(saved.lastAuditLines.isEmpty)  // the last record had none: every earlier one was written
    }

    @Test func aTornLastLineAndOldStyleLinesLoad() throws {
        let directory = try TestBroker.makeDirectory()
        let old = String(decoding: try JSONEncoder().encode(try Self.snapshot(["x"], phase: "pending")), as: UTF8.self)
        let journal =
            old + "\n" + #"{"topic":"sensors/x","seq":41}"# + "\n" + #"{"topic":"sensors/x","seq":42,"audit":["#
        try journal.write(toFile: directory + "/journal.jsonl", atomically: true, encoding: .utf8)
        let saved = try InstanceStateStore(directory: directory).load()
        #expect(saved.sequences == ["sensors/x": 41])  // 42 was torn by the kill: not evaluated, redelivered
        #expect(saved.instances.map(\.labels) == [["x"]])
        #expect(saved.lastAuditLines.isEmpty)
    }

    @Test func auditLinesTheJournalHasAreWrittenOnceIfMissing() throws {
        let path = try TestBroker.makeDirectory() + "/audit.jsonl"
        try "{\"event\":\"older\"}\n".write(toFile: path, atomically: true, encoding: .utf8)
        let lines = [#"{"event":"transition"}"#, #"{"event":"command"}"#]
        #expect(try AuditTrail(path: path).completeWith(lines))
        #expect(try AuditTrail(path: path).completeWith(lines) == false)
        let audit = try AuditTrail(path: path)
        try audit.write(lines: [#"{"event":"next"}"#])
        #expect(
            try String(contentsOfFile: path, encoding: .utf8)
                == "{\"event\":\"older\"}\n" + lines.joined(separator: "\n") + "\n{\"event\":\"next\"}\n"
        )
    }
}

/// A compaction writes its snapshots outside the engine's lock, after rotating the journal: a crash at any
/// point of it loads back the same state.
@Suite struct InstanceStateStoreCompactionTests {
    @Test func aCompactionInterruptedAtAnyPointLoadsTheSameState() throws {
        for interruption in ["after rotating", "after writing the snapshots", "never"] {
            let directory = try TestBroker.makeDirectory()
            let store = try InstanceStateStore(directory: directory)
            try store.append(.init(instances: [try InstanceStateStoreTests.snapshot(["a"], phase: "pending")]))
            try store.append(.init(instances: [try InstanceStateStoreTests.snapshot(["a"], phase: "firing")]))
            try store.append(.init(instances: [try InstanceStateStoreTests.snapshot(["b"], phase: "firing")]))
            try store.append(.init(sequence: ("sensors/a", 9)))
            let before = try store.load()
            // The state the snapshots hold is taken with the rotation, as the engine does under its lock.
            let through = try store.rotateJournal()
            try store.append(.init(instances: [try InstanceStateStoreTests.snapshot(["b"], phase: "inactive")]))
            if interruption != "after rotating" {
                // A crash after the snapshots were renamed but before the old journal was deleted is the
                // same as a snapshot written and its journal read again.
                try store.writeSnapshots(instances: before.instances, sequences: before.sequences, through: through)
                if interruption == "after writing the snapshots" {
                    try
                        "{\"instances\":[\(String(decoding: try JSONEncoder().encode(try InstanceStateStoreTests.snapshot(["a"], phase: "firing")), as: UTF8.self))]}\n"
                        .write(toFile: directory + "/journal-\(through).jsonl", atomically: true, encoding: .utf8)
                }
            }
            let after = try InstanceStateStore(directory: directory).load()
            let phases = Dictionary(uniqueKeysWithValues: after.instances.map { ($0.labels, $0.phase) })
            #expect(phases == [["a"]: .firing, ["b"]: .inactive], "\(interruption)")
            #expect(after.sequences == ["sensors/a": 9], "\(interruption)")
        }
    }

    @Test func aJournalOfAnEarlierVersionStillLoadsAndIsFoldedIn() throws {
        let directory = try TestBroker.makeDirectory()
        try #"{"topic":"sensors/x","seq":41}"#.appending("\n").write(
            toFile: directory + "/journal.jsonl",
            atomically: true,
            encoding: .utf8
        )
        let store = try InstanceStateStore(directory: directory)
        try store.append(.init(sequence: ("sensors/y", 3)))
        let saved = try store.load()
        #expect(saved.sequences == ["sensors/x": 41, "sensors/y": 3])
        try store.compact(instances: saved.instances, sequences: saved.sequences)
        #expect(!FileManager.default.fileExists(atPath: directory + "/journal.jsonl"))
        #expect(try InstanceStateStore(directory: directory).load().sequences == ["sensors/x": 41, "sensors/y": 3])
    }
}
