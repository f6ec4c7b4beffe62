import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Reports changes under a rules folder with inotify (writes, creates, deletes, renames — an editor's
/// atomic save counts). Subfolders are watched too, including ones created later.
public final class RuleDirectoryWatcher: Sendable {
    /// One value per batch of file system events; ends with an error when a folder can no longer be watched.
    public let changes: AsyncThrowingStream<Void, any Error>
    /// The write end of a pipe the reading thread polls beside inotify.
    private let wakeup: Int32
    private let shared = Shared()

    /// Shared with the reading thread.
    private final class Shared: Sendable {
        struct State {
            var events = 0
            /// Set by the reading thread once it closed the descriptors: `close()` must not write then.
            var finished = false
        }
        let state = Mutex(State())
    }

    /// How many batches of events arrived so far; lets a reader coalesce a burst into one reload.
    public var eventCount: Int { shared.state.withLock { $0.events } }

    /// Watches `directory` and its subfolders; throws when inotify is unavailable or a folder cannot be
    /// watched (for example when `fs.inotify.max_user_watches` is reached).
    public init(directory: String) throws {
        let descriptor = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard descriptor >= 0 else { throw RuleFilesError("inotify_init1 failed: \(String(cString: strerror(errno)))") }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else {
            Glibc.close(descriptor)
            throw RuleFilesError("pipe failed: \(String(cString: strerror(errno)))")
        }
        let (wakeupReader, wakeup) = (pipeEnds[0], pipeEnds[1])
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        do {
            try Self.watchTree(directory, descriptor: descriptor)
        } catch {
            for open in [descriptor, wakeupReader, wakeup] { Glibc.close(open) }
            throw error
        }
        self.wakeup = wakeup
        let shared = self.shared
        let (stream, continuation) = AsyncThrowingStream.makeStream(
            of: Void.self,
            bufferingPolicy: .bufferingNewest(1)
        )
        self.changes = stream
        Thread {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            var failure: (any Error)?
            loop: while true {
                var descriptors = [
                    pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: wakeupReader, events: Int16(POLLIN), revents: 0),
                ]
                let ready = poll(&descriptors, 2, -1)
                if ready < 0 {
                    if errno == EINTR { continue }
                    failure = RuleFilesError("poll on the rules folder failed: \(String(cString: strerror(errno)))")
                    break
                }
                if descriptors[1].revents != 0 { break }  // close()
                var batch = false
                while true {
                    let count = read(descriptor, &buffer, buffer.count)
                    if count > 0 {
                        batch = true
                        continue
                    }
                    if count < 0 && (errno == EAGAIN || errno == EINTR) { break }
                    failure = RuleFilesError("reading inotify events failed: \(String(cString: strerror(errno)))")
                    break loop
                }
                guard batch else { continue }
                do {
                    // A new subfolder needs its own watch; re-adding existing ones is harmless.
                    try Self.watchTree(directory, descriptor: descriptor)
                } catch {
                    failure = error
                    break
                }
                shared.state.withLock { $0.events += 1 }
                continuation.yield()
            }
            shared.state.withLock { state in
                state.finished = true
                for open in [descriptor, wakeupReader, wakeup] { Glibc.close(open) }
            }
            continuation.finish(throwing: failure)
        }.start()
    }

    /// Stops watching: wakes the reading thread, which closes the descriptors and ends `changes`.
    public func close() {
        shared.state.withLock { state in
            guard !state.finished else { return }
            var byte: UInt8 = 1
            _ = write(wakeup, &byte, 1)
        }
    }

    private static func watchTree(_ path: String, descriptor: Int32) throws {
        let mask = UInt32(IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE_SELF)
        if inotify_add_watch(descriptor, path, mask) < 0 {
            let error = errno
            // A subfolder removed between listing and watching is no problem; anything else is.
            if error == ENOENT { return }
            let hint = error == ENOSPC ? " (the inotify watch limit, fs.inotify.max_user_watches, is reached)" : ""
            throw RuleFilesError("cannot watch '\(path)' for changes: \(String(cString: strerror(error)))\(hint)")
        }
        let subfolders = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for name in subfolders where !name.hasPrefix(".") {
            var isDirectory: ObjCBool = false
            let child = path + "/" + name
            if FileManager.default.fileExists(atPath: child, isDirectory: &isDirectory), isDirectory.boolValue {
                try watchTree(child, descriptor: descriptor)
            }
        }
    }
}
