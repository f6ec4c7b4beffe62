import FileFormats
import Foundation
import Rules
import Synchronization

/// Keeps the engine's state in a directory across restarts: `instances.json` and `sequences.json`
/// (snapshots, replaced atomically by rename) plus journals `journal-N.jsonl`, one line per evaluated
/// reading or timer that changed something, appended before the reading is acknowledged to the broker.
///
/// A compaction rotates the journal (new lines go to generation N+1) while the engine holds its lock,
/// then writes the snapshots and deletes journals up to N outside it. Loading reads the snapshots, then
/// every journal left, oldest first: a journal the snapshot already includes changes nothing when read
/// again (for each instance its last line is the state the snapshot has), so a crash at any point of a
/// compaction loads back the same state. `journal.jsonl` (earlier versions) is read before the others.
///
/// A journal line is one `write`: the instances the reading changed, its topic's `seq`, and the audit
/// lines it produced. A `kill -9` therefore leaves either all of it or none of it (a torn last line
/// is ignored); a reading whose line is there is a duplicate when the broker redelivers it, and audit
/// lines of the last record that did not reach the audit file are written on the next start.
public final class InstanceStateStore: Sendable {
    /// What `load` found.
    public struct SavedState: Sendable {
        /// The last state of every instance recorded.
        public var instances: [InstanceSnapshot] = []
        /// The last `seq` evaluated per topic.
        public var sequences: [String: Int64] = [:]
        /// The audit lines of the last journal record, which may not have reached the audit file.
        public var lastAuditLines: [String] = []
    }

    /// One journal line: what one reading (or one timer) did.
    public struct Record: Sendable {
        /// The instances it changed.
        public var instances: [InstanceSnapshot] = []
        /// The reading's topic and `seq`, when it had one and was evaluated.
        public var sequence: (topic: String, value: Int64)?
        /// The audit lines it produced, in the order they are written to the audit file.
        public var auditLines: [String] = []

        /// A record; empty records are not written.
        public init(
            instances: [InstanceSnapshot] = [],
            sequence: (topic: String, value: Int64)? = nil,
            auditLines: [String] = []
        ) {
            self.instances = instances
            self.sequence = sequence
            self.auditLines = auditLines
        }

        var isEmpty: Bool { instances.isEmpty && sequence == nil && auditLines.isEmpty }
    }

    let directory: String
    /// The open journal, its generation, and how much it holds since the last compaction.
    private struct Journal {
        var handle: FileHandle?
        var generation = 1
        var instanceLines = 0
        var bytes = 0
    }
    private let journal = Mutex(Journal())
    private let compactAfterLines: Int
    private let compactAfterBytes: Int

    /// The journal is folded into the snapshots after `compactAfterLines` instance changes or
    /// `compactAfterBytes` of journal (mostly `seq` records), whichever comes first.
    public init(directory: String, compactAfterLines: Int = 10_000, compactAfterBytes: Int = 16 << 20) throws {
        self.directory = directory
        self.compactAfterLines = compactAfterLines
        self.compactAfterBytes = compactAfterBytes
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let newest = Self.journalGenerations(in: directory).last ?? 1
        journal.withLock { $0.generation = newest }
    }

    var snapshotPath: String { directory + "/instances.json" }
    var sequencesPath: String { directory + "/sequences.json" }
    /// Written by earlier versions; read before the numbered journals.
    var legacyJournalPath: String { directory + "/journal.jsonl" }

    func journalPath(_ generation: Int) -> String { directory + "/journal-\(generation).jsonl" }

    /// The generations of the journals in `directory`, oldest first.
    static func journalGenerations(in directory: String) -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("journal-"), name.hasSuffix(".jsonl") else { return nil }
            return Int(name.dropFirst("journal-".count).dropLast(".jsonl".count))
        }.sorted()
    }

    /// Reads the snapshots, then the journal over them.
    public func load() throws -> SavedState {
        var byKey: [String: InstanceSnapshot] = [:]
        var state = SavedState()
        let decoder = JSONDecoder()
        if let data = FileManager.default.contents(atPath: snapshotPath) {
            for snapshot in try decoder.decode([InstanceSnapshot].self, from: data) { byKey[key(snapshot)] = snapshot }
        }
        if let data = FileManager.default.contents(atPath: sequencesPath) {
            state.sequences = try decoder.decode([String: Int64].self, from: data)
        }
        let journals = [legacyJournalPath] + Self.journalGenerations(in: directory).map(journalPath)
        for path in journals {
            guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { continue }
            var lines = data.split(separator: UInt8(ascii: "\n"))
            if data.last != UInt8(ascii: "\n"), !lines.isEmpty { lines.removeLast() }  // torn by a kill
            for line in lines {
                if let record = try? decoder.decode(StoredRecord.self, from: Data(line)), record.isRecord {
                    for snapshot in record.instances ?? [] { byKey[key(snapshot)] = snapshot }
                    if let topic = record.topic, let sequence = record.seq {
                        // max: a journal left behind by a compaction interrupted after its rename is older
                        state.sequences[topic] = max(state.sequences[topic] ?? .min, sequence)
                    }
                    state.lastAuditLines = record.audit ?? []
                } else if let snapshot = try? decoder.decode(InstanceSnapshot.self, from: Data(line)) {
                    byKey[key(snapshot)] = snapshot  // a journal written before records had fields
                    state.lastAuditLines = []
                }
            }
        }
        state.instances = Array(byKey.values)
        return state
    }

    /// Appends one record to the journal as one write (in the kernel, so it survives a `kill -9`, when this returns).
    public func append(_ record: Record) throws {
        guard !record.isEmpty else { return }
        var line = "{"
        var separator = ""
        if let sequence = record.sequence {
            line += "\"topic\":\(JSONValue.string(sequence.topic).jsonText),\"seq\":\(sequence.value)"
            separator = ","
        }
        if !record.instances.isEmpty {
            line += separator + "\"instances\":"
            line += String(decoding: try JSONEncoder().encode(record.instances), as: UTF8.self)
            separator = ","
        }
        if !record.auditLines.isEmpty {
            line += separator + "\"audit\":" + JSONValue.array(record.auditLines.map(JSONValue.string)).jsonText
        }
        line += "}\n"
        let data = Data(line.utf8)
        try journal.withLock { journal in
            if journal.handle == nil {
                let path = journalPath(journal.generation)
                if !FileManager.default.fileExists(atPath: path) {
                    _ = FileManager.default.createFile(atPath: path, contents: nil)
                }
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
                try handle.seekToEnd()
                journal.handle = handle
            }
            try journal.handle?.write(contentsOf: data)
            journal.instanceLines += record.instances.count
            journal.bytes += data.count
        }
    }

    /// Whether the journal is long enough to be folded into new snapshots.
    public var needsCompaction: Bool {
        journal.withLock { $0.instanceLines >= compactAfterLines || $0.bytes >= compactAfterBytes }
    }

    /// The first half of a compaction, quick: from now on records go to a new journal. Call it where no
    /// `append` runs at the same time, together with taking the state that the snapshots will hold;
    /// returns the last generation that state includes.
    public func rotateJournal() throws -> Int {
        try journal.withLock { journal in
            try journal.handle?.close()
            let through = journal.generation
            journal = Journal(generation: through + 1)
            return through
        }
    }

    /// The second half, slow (encoding, fsync), anywhere: writes `instances` and `sequences` — the state
    /// as of `rotateJournal()` — as the new snapshots (temporary file, fsync, rename), then deletes the
    /// journals they include.
    public func writeSnapshots(instances: [InstanceSnapshot], sequences: [String: Int64], through: Int) throws {
        let encoder = JSONEncoder()
        try Self.replace(snapshotPath, with: try encoder.encode(instances))
        try Self.replace(sequencesPath, with: try encoder.encode(sequences))
        for path in [legacyJournalPath]
            + Self.journalGenerations(in: directory).filter({ $0 <= through }).map(journalPath)
        where FileManager.default.fileExists(atPath: path) {
            try FileManager.default.removeItem(atPath: path)
        }
    }

    /// Both halves at once (where no `append` runs meanwhile).
    public func compact(instances: [InstanceSnapshot], sequences: [String: Int64]) throws {
        try writeSnapshots(instances: instances, sequences: sequences, through: try rotateJournal())
    }

    private static func replace(_ path: String, with data: Data) throws {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: temporary])
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
        try handle.synchronize()
        try handle.close()
        guard rename(temporary, path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
    }

    private func key(_ snapshot: InstanceSnapshot) -> String {
        snapshot.ruleID + "\u{0}" + snapshot.labels.joined(separator: "\u{0}")
    }

    private struct StoredRecord: Decodable {
        var topic: String?
        var seq: Int64?
        var instances: [InstanceSnapshot]?
        var audit: [String]?
        var isRecord: Bool { topic != nil || instances != nil || audit != nil }
    }
}
