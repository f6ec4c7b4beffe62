import Foundation
import Rules

/// Keeps rule instance state in a directory across restarts: `instances.json` (a snapshot, replaced
/// atomically by rename) plus `journal.jsonl` (one line per changed instance, appended as transitions
/// happen). Loading reads the snapshot, then the journal; a torn last line is ignored.
public final class InstanceStateStore: @unchecked Sendable {
    let directory: String
    private let lock = NSLock()
    private var journal: FileHandle?
    private var journalLines = 0
    private let compactAfterLines: Int

    public init(directory: String, compactAfterLines: Int = 10_000) throws {
        self.directory = directory
        self.compactAfterLines = compactAfterLines
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    var snapshotPath: String { directory + "/instances.json" }
    var journalPath: String { directory + "/journal.jsonl" }

    /// The last state of every instance recorded.
    public func load() throws -> [InstanceSnapshot] {
        var byKey: [String: InstanceSnapshot] = [:]
        let decoder = JSONDecoder()
        if let data = FileManager.default.contents(atPath: snapshotPath) {
            for snapshot in try decoder.decode([InstanceSnapshot].self, from: data) { byKey[key(snapshot)] = snapshot }
        }
        if let data = FileManager.default.contents(atPath: journalPath) {
            for line in data.split(separator: UInt8(ascii: "\n")) {
                guard let snapshot = try? decoder.decode(InstanceSnapshot.self, from: Data(line)) else { continue }
                byKey[key(snapshot)] = snapshot
            }
        }
        return Array(byKey.values)
    }

    /// Appends changed instances to the journal (flushed to the kernel before returning).
    public func append(_ snapshots: [InstanceSnapshot]) throws {
        guard !snapshots.isEmpty else { return }
        let encoder = JSONEncoder()
        var data = Data()
        for snapshot in snapshots {
            data.append(try encoder.encode(snapshot))
            data.append(UInt8(ascii: "\n"))
        }
        try lock.withLock {
            if journal == nil {
                if !FileManager.default.fileExists(atPath: journalPath) {
                    _ = FileManager.default.createFile(atPath: journalPath, contents: nil)
                }
                journal = try FileHandle(forWritingTo: URL(fileURLWithPath: journalPath))
                try journal?.seekToEnd()
            }
            try journal?.write(contentsOf: data)
            journalLines += snapshots.count
        }
    }

    /// Whether the journal is long enough to be folded into a new snapshot.
    public var needsCompaction: Bool { lock.withLock { journalLines >= compactAfterLines } }

    /// Writes `all` as the new snapshot (temporary file, fsync, rename) and empties the journal.
    public func compact(_ all: [InstanceSnapshot]) throws {
        let data = try JSONEncoder().encode(all)
        let temporary = snapshotPath + ".tmp"
        try lock.withLock {
            guard FileManager.default.createFile(atPath: temporary, contents: data) else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: temporary])
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
            try handle.synchronize()
            try handle.close()
            guard rename(temporary, snapshotPath) == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: snapshotPath])
            }
            try journal?.close()
            journal = nil
            try? FileManager.default.removeItem(atPath: journalPath)
            journalLines = 0
        }
    }

    private func key(_ snapshot: InstanceSnapshot) -> String {
        snapshot.ruleID + "\u{0}" + snapshot.labels.joined(separator: "\u{0}")
    }
}
