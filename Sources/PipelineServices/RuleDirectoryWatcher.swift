import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Reports changes under a rules folder with inotify (writes, creates, deletes, renames — an editor's
/// atomic save counts). Subfolders are watched too, including ones created later.
public final class RuleDirectoryWatcher: Sendable {
    /// One value per batch of file system events.
    public let changes: AsyncStream<Void>
    private let descriptor: Int32
    private let counter = EventCounter()

    /// How many batches of events arrived so far; lets a reader coalesce a burst into one reload.
    public var eventCount: Int { counter.value.withLock { $0 } }

    private final class EventCounter: Sendable {
        let value = Mutex(0)
    }

    public init(directory: String) throws {
        let descriptor = inotify_init1(Int32(IN_CLOEXEC))
        guard descriptor >= 0 else { throw RuleFilesError("inotify_init1 failed: \(String(cString: strerror(errno)))") }
        self.descriptor = descriptor
        let counter = self.counter
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.changes = stream
        let mask = UInt32(IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE_SELF)
        @Sendable func watchTree(_ path: String) {
            _ = inotify_add_watch(descriptor, path, mask)
            let subfolders = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            for name in subfolders where !name.hasPrefix(".") {
                var isDirectory: ObjCBool = false
                let child = path + "/" + name
                if FileManager.default.fileExists(atPath: child, isDirectory: &isDirectory), isDirectory.boolValue {
                    watchTree(child)
                }
            }
        }
        watchTree(directory)
        Thread {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let count = read(descriptor, &buffer, buffer.count)
                if count <= 0 { break }
                // A new subfolder needs its own watch; re-adding existing ones is harmless.
                watchTree(directory)
                counter.value.withLock { $0 += 1 }
                continuation.yield()
            }
            continuation.finish()
        }.start()
    }

    /// Stops watching.
    public func close() {
        Glibc.close(descriptor)
    }
}
