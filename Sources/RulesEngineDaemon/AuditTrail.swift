import FileFormats
import Foundation
import InputFiles
import Rules
import Synchronization

/// `--audit FILE`: appends `AuditLine`s, one JSON line per transition and per command, so anyone can
/// answer "why did cooling switch on at 03:12?".
public final class AuditTrail: Sendable {
    private let handle: Mutex<FileHandle>

    public init(path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw RuleFilesError("\(path): cannot create the audit file")
            }
        }
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        self.handle = Mutex(handle)
    }

    /// Appends lines (without their newlines) in one write; throws when the write failed (disk full).
    public func write(lines: [String]) throws {
        guard !lines.isEmpty else { return }
        let data = Data(lines.map { $0 + "\n" }.joined().utf8)
        try handle.withLock { try $0.write(contentsOf: data) }
    }

    /// Appends `lines` unless the file already ends with them: after a `kill -9`, the state journal's last
    /// record may hold audit lines that were decided but never written here. Returns whether it wrote.
    @discardableResult
    public func completeWith(_ lines: [String]) throws -> Bool {
        guard !lines.isEmpty else { return false }
        let expected = Data(lines.map { $0 + "\n" }.joined().utf8)
        return try handle.withLock { handle in
            let end = try handle.seekToEnd()
            if end >= UInt64(expected.count) {
                try handle.seek(toOffset: end - UInt64(expected.count))
                let tail = try handle.read(upToCount: expected.count) ?? Data()
                try handle.seekToEnd()
                if tail == expected { return false }
            }
            try handle.write(contentsOf: expected)
            return true
        }
    }
}
