import Foundation
import MQTT
import Synchronization

/// A program a test starts, whose stdout it reads line by line and which it can signal by PID.
public final class ChildProcess: Sendable {
    /// The process id.
    public let pid: Int32
    private let lines = LockedLines()
    private let stderrPath: String

    /// When the process was seen to exit (by the thread that reaped it), or nil before. A duration measured
    /// to this instant does not include the time a busy test run takes to resume the waiting task.
    public var exitedAt: ContinuousClock.Instant? { lines.withLock { $0.exitedAt } }

    private final class LockedLines: Sendable {
        struct State {
            var lines: [String] = []
            var closed = false
            var waiters: [(line: String, id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
            var nextWaiter = 0
            var closeWaiters: [CheckedContinuation<Void, Never>] = []
            var exitedAt: ContinuousClock.Instant?
        }
        let state = Mutex(State())

        func withLock<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
            try state.withLock { try body(&$0) }
        }
    }

    /// Starts `executable` with `arguments`; stderr goes to a file, stdout is read as lines.
    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        let directory = try TestBroker.makeDirectory()
        stderrPath = directory + "/stderr.log"
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { throw TestBrokerError("pipe() failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        posix_spawn_file_actions_addclose(&actions, pipe[1])
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let environmentStrings = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = environmentStrings.map { strdup($0) } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var pid: pid_t = 0
        let rc = TestBroker.withDefaultSignalAttributes { posix_spawnp(&pid, executable, &actions, $0, argv, envp) }
        close(pipe[1])
        guard rc == 0 else {
            close(pipe[0])
            throw TestBrokerError("cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        self.pid = pid
        let readEnd = pipe[0]
        let thread = Thread { [lines] in
            var buffer = [UInt8]()
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(readEnd, &chunk, chunk.count)
                if count <= 0 { break }
                buffer.append(contentsOf: chunk[0..<count])
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer.removeSubrange(...newline)
                    let ready = lines.withLock { state in
                        state.lines.append(line)
                        let matched = state.waiters.filter { $0.line == line }.map(\.continuation)
                        state.waiters.removeAll { $0.line == line }
                        return matched
                    }
                    for waiter in ready { waiter.resume() }
                }
            }
            close(readEnd)
            let (waiters, closeWaiters) = lines.withLock { state in
                state.closed = true
                defer {
                    state.waiters = []
                    state.closeWaiters = []
                }
                return (state.waiters.map(\.continuation), state.closeWaiters)
            }
            for waiter in waiters { waiter.resume(throwing: TestBrokerError("the process closed stdout")) }
            for waiter in closeWaiters { waiter.resume() }
        }
        thread.start()
    }

    deinit {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// Waits until the process printed exactly `line` on stdout.
    public func waitForLine(_ line: String, timeout: Duration = .seconds(30)) async throws {
        let stderrPath = self.stderrPath
        do {
            try await withTimeout(timeout, "waiting for '\(line)'") { [lines] in
                let id = lines.withLock { state in
                    defer { state.nextWaiter += 1 }
                    return state.nextWaiter
                }
                // Cancellable, so that the timeout ends the wait instead of waiting for it.
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                        let result: Result<Void, any Error>? = lines.withLock { state in
                            if state.lines.contains(line) { return .success(()) }
                            if state.closed { return .failure(TestBrokerError("the process closed stdout")) }
                            if Task.isCancelled { return .failure(CancellationError()) }
                            state.waiters.append((line, id, continuation))
                            return nil
                        }
                        if let result { continuation.resume(with: result) }
                    }
                } onCancel: {
                    let waiter = lines.withLock { state in
                        defer { state.waiters.removeAll { $0.id == id } }
                        return state.waiters.first { $0.id == id }?.continuation
                    }
                    waiter?.resume(throwing: CancellationError())
                }
            }
        } catch {
            let stderr = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
            throw TestBrokerError("\(error); stderr: \(stderr)")
        }
    }

    /// Everything printed on stdout so far.
    public var output: [String] { lines.withLock { $0.lines } }

    /// Everything printed on stderr so far.
    public var standardError: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Sends a signal.
    public func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// Waits for the process to exit and for its stdout to be read to the end, so `output` is complete.
    public func waitForExitAndOutput() async -> Int32 {
        let status = await waitForExit()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let closed = lines.withLock { state in
                if !state.closed { state.closeWaiters.append(continuation) }
                return state.closed
            }
            if closed { continuation.resume() }
        }
        return status
    }

    /// Waits at most `timeout` for the process to exit; then kills it with SIGKILL (status 137).
    public func waitForExit(killingAfter timeout: Duration) async -> Int32 {
        let pid = self.pid
        return await withTaskGroup(of: Int32?.self) { group in
            group.addTask { await self.waitForExit() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next()!
            if let status = first {
                group.cancelAll()
                return status
            }
            kill(pid, SIGKILL)
            return await group.next()!!
        }
    }

    /// Waits for the process to exit (blocking a thread of its own) and returns its exit status; `output`
    /// may still miss the last lines (use `waitForExitAndOutput()` to read them).
    public func waitForExit() async -> Int32 {
        let pid = self.pid
        return await withCheckedContinuation { continuation in
            Thread { [lines] in
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                let now = ContinuousClock.now
                lines.withLock { $0.exitedAt = $0.exitedAt ?? now }
                let exited = status & 0x7f == 0
                continuation.resume(returning: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }.start()
        }
    }
}
