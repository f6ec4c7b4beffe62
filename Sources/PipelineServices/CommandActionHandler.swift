import Foundation
import Logging
import Rules

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

    /// Runs `arguments[0]` (looked up in PATH) with the rest as arguments; output is capped at 64 KiB.
    static func run(_ arguments: [String], timeoutMilliseconds: Int64) async throws -> (Int32, String, Bool) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["--"] + arguments
        process.standardInput = FileHandle.nullDevice
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let pid = process.processIdentifier
        let timer = Task {
            try await Task.sleep(for: .milliseconds(timeoutMilliseconds))
            kill(pid, SIGKILL)
            return true
        }
        let (status, data) = await withCheckedContinuation {
            (continuation: CheckedContinuation<(Int32, Data), Never>) in
            let reader = pipe.fileHandleForReading
            Thread {
                let data = reader.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: (process.terminationStatus, data))
            }.start()
        }
        timer.cancel()
        let timedOut = (try? await timer.value) ?? false
        let output = String(decoding: data.prefix(65_536), as: UTF8.self)
        return (status, output, timedOut)
    }

    struct CommandError: Error, CustomStringConvertible {
        var description: String
    }
}
