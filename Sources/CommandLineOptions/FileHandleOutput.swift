#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to the standard streams, safe from any task.
public enum FileHandleOutput: Sendable {
    case standardOutput
    case standardError

    /// Writes the text as is.
    public func write(_ text: String) {
        var text = text
        text.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(
                    self == .standardOutput ? 1 : 2,
                    buffer.baseAddress! + offset,
                    buffer.count - offset
                )
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
