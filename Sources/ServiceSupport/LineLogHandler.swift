import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Writes each log event as one line to standard error, in `StreamLogHandler`'s format
/// (`2026-12-05T10:11:32+0000 notice rules-engine: key=value … [Module] message`), at a fraction of its cost:
/// the timestamp is formatted once per second, the line is built in one string and written with one `write`.
/// The engine logs a line per transition, so this is on its decision path.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let clock = SecondStamp.shared

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        // Built as bytes: appending to a `String` checks every joint for grapheme clusters.
        var line: [UInt8] = []
        line.reserveCapacity(256)
        line.append(contentsOf: clock.now().utf8)
        line.append(UInt8(ascii: " "))
        line.append(contentsOf: event.level.rawValue.utf8)
        if !label.isEmpty {
            line.append(UInt8(ascii: " "))
            line.append(contentsOf: label.utf8)
        }
        line.append(UInt8(ascii: ":"))
        var all = metadata
        if let explicit = event.metadata, !explicit.isEmpty {
            if all.isEmpty {
                all = explicit
            } else {
                all.merge(explicit) { _, explicit in explicit }
            }
        }
        if let error = event.error {
            all["error.message"] = "\(error)"
            all["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            line.append(UInt8(ascii: " "))
            line.append(contentsOf: key.utf8)
            line.append(UInt8(ascii: "="))
            if case .string(let text) = value {
                line.append(contentsOf: text.utf8)
            } else {
                line.append(contentsOf: value.description.utf8)
            }
        }
        line.append(contentsOf: " [".utf8)
        line.append(contentsOf: event.source.utf8)
        line.append(contentsOf: "] ".utf8)
        line.append(contentsOf: event.message.description.utf8)
        line.append(UInt8(ascii: "\n"))
        LineLogHandler.writeToStandardError(line)
    }

    private static func writeToStandardError(_ line: [UInt8]) {
        line.withUnsafeBufferPointer { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}

/// The local time of the current second as `%Y-%m-%dT%H:%M:%S%z`, formatted once per second.
private final class SecondStamp: Sendable {
    static let shared = SecondStamp()
    private let cached = Mutex<(second: Int, text: String)>((-1, ""))

    func now() -> String {
        var seconds = time(nil)
        if let text = cached.withLock({ $0.second == seconds ? $0.text : nil }) { return text }
        var parts = tm()
        localtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        let text = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        cached.withLock { $0 = (seconds, text) }
        return text
    }
}
