import FileFormats
import Foundation
import Logging
import Rules

#if canImport(Glibc)
import Glibc
import ServiceSupport
#endif

/// Runs a configured program with arguments (no shell), kills it after its timeout, and logs its output.
public struct CommandActionHandler: ActionHandler {
    let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    public func handles(_ action: RenderedAction) -> Bool {
        if case .command = action { return true }
        return false
    }

    public func perform(_ action: FiredAction) async throws {
        guard case .command(let arguments, let timeout) = action.action, !arguments.isEmpty else { return }
        let (status, output, timedOut) = try await Self.run(arguments, timeoutMilliseconds: timeout)
        var metadata: Logger.Metadata = [
            "rule": "\(action.ruleID)", "command": "\(arguments)", "exit_status": "\(status)",
            "output": "\(output)",
        ]
        if timedOut {
            metadata["timeout"] = "\(RuleDuration.format(timeout))"
            logger.warning("command killed after its timeout", metadata: metadata)
            throw CommandError(description: "\(arguments[0]) timed out after \(RuleDuration.format(timeout))")
        }
        if status != 0 {
            logger.warning("command failed", metadata: metadata)
            throw CommandError(description: "\(arguments[0]) exited with \(status)")
        }
        logger.info("command ran", metadata: metadata)
    }

    /// Runs `arguments[0]` (looked up in PATH) with the rest as arguments, in a process group of its own;
    /// returns its exit status, its output (stdout and stderr, capped at 64 KiB) and whether it timed out.
    ///
    /// At the deadline, or when the calling task is cancelled (the engine is shutting down), the whole group
    /// is killed and reading stops: a grandchild that keeps the output pipe open cannot hold the action.
    static func run(_ arguments: [String], timeoutMilliseconds: Int64) async throws -> (Int32, String, Bool) {
        let process = try SpawnedProcess(arguments)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<(Int32, String, Bool), Never>) in
                Thread {
                    continuation.resume(returning: process.collect(timeoutMilliseconds: timeoutMilliseconds))
                }.start()
            }
        } onCancel: {
            process.killGroup()
        }
    }

    struct CommandError: Error, CustomStringConvertible {
        var description: String
    }
}

/// A program started with `posix_spawnp` as the leader of a new process group, its stdout and stderr on
/// one pipe, stdin from /dev/null.
final class SpawnedProcess: Sendable {
    let pid: pid_t
    private let output: Int32

    init(_ arguments: [String]) throws {
        guard let program = arguments.first else { throw CommandActionHandler.CommandError(description: "no program") }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else {
            throw CommandActionHandler.CommandError(description: "pipe failed: \(String(cString: strerror(errno)))")
        }
        _ = fcntl(pipeEnds[0], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 2)
        posix_spawn_file_actions_addclose(&actions, pipeEnds[1])
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let status = posix_spawnp(&pid, program, &actions, &attributes, argv, environ)
        close(pipeEnds[1])
        guard status == 0 else {
            close(pipeEnds[0])
            throw CommandActionHandler.CommandError(
                description: "cannot run '\(program)': \(String(cString: strerror(status)))"
            )
        }
        self.pid = pid
        self.output = pipeEnds[0]
    }

    /// Kills every process of the group (the program and whatever it started).
    func killGroup() {
        kill(-pid, SIGKILL)
    }

    /// Reads the output until the program exits (or closes it) or the deadline passes (then kills the
    /// group), and reaps the program. Blocks the calling thread for at most about `timeoutMilliseconds`.
    func collect(timeoutMilliseconds: Int64) -> (Int32, String, Bool) {
        let deadline = WallClock.nowMilliseconds() + timeoutMilliseconds
        var collected: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var status: Int32 = 0
        var exited = false
        var timedOut = false
        var open = true
        while open || !exited {
            if !exited, waitpid(pid, &status, WNOHANG) == pid { exited = true }
            let remaining = deadline - WallClock.nowMilliseconds()
            if !exited && remaining <= 0 {
                timedOut = true
                break
            }
            guard open else {
                usleep(1000)
                continue
            }
            // Once the program exited, only what is already in the pipe is read: a process it left
            // behind may keep the pipe open.
            var descriptor = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, exited ? 0 : Int32(clamping: min(remaining, 50)))
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 {
                if exited { open = false }
                continue
            }
            let count = read(output, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 {
                open = false
                continue
            }
            if collected.count < 65_536 { collected += chunk[..<min(count, 65_536 - collected.count)] }
        }
        close(output)
        if timedOut {
            killGroup()
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, String(decoding: collected, as: UTF8.self), timedOut)
    }
}
