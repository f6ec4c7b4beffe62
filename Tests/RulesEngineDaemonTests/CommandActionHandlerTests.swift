import Foundation
import Testing

@testable import RulesEngineDaemon

/// `command:` actions: a program with arguments, bounded by its timeout.
@Suite("command actions")
struct CommandActionHandlerTests {
    /// A grandchild that keeps the output pipe open must not hold the action past its timeout, and the
    /// whole process group dies at the deadline.
    ///
    /// The collection is timed on the thread that runs it: a duration that includes resuming a task would
    /// also count the time a busy test run (every suite at once on 2 cores) takes to get to it.
    @Test func theTimeoutBoundsACommandWhoseGrandchildHoldsThePipe() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let process = try SpawnedProcess(["sh", "-c", "sleep 600 & echo $! > \(pidFile); sleep 600"])
        let (timedOut, took) = await withCheckedContinuation { continuation in
            Thread {
                let started = ContinuousClock.now
                let (_, _, timedOut) = process.collect(timeoutMilliseconds: 500)
                continuation.resume(returning: (timedOut, ContinuousClock.now - started))
            }.start()
        }
        #expect(timedOut)
        #expect(took < .seconds(10), "took \(took) for a 500 ms timeout: the grandchild sleeps 600 s")
        let grandchild = try #require(
            Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        )
        // Killed with its group (an orphan is reaped by init; wait for that, boundedly).
        var gone = false
        for _ in 0..<1000 where !gone {
            gone = kill(grandchild, 0) != 0
            if !gone { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(gone, "grandchild \(grandchild) still alive")
    }

    @Test func outputAndStatusOfAQuickCommand() async throws {
        let (status, output, timedOut) = try await CommandActionHandler.run(
            ["sh", "-c", "echo out; echo err >&2; exit 3"],
            timeoutMilliseconds: 10_000
        )
        #expect(status == 3)
        #expect(output == "out\nerr\n")
        #expect(!timedOut)
    }

    @Test func aMissingProgramIsAnError() async throws {
        await #expect(throws: (any Error).self) {
            _ = try await CommandActionHandler.run(["no-such-program-here"], timeoutMilliseconds: 1000)
        }
    }

    /// At shutdown the dispatcher stops waiting: cancelling the action kills its process group at once.
    /// The program would sleep 600 s; it ends killed (status 128 + SIGKILL), not by itself.
    @Test func cancellingTheActionKillsItsProcessGroup() async throws {
        let task = Task { try await CommandActionHandler.run(["sleep", "600"], timeoutMilliseconds: 1_200_000) }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        let (status, _, timedOut) = try await task.value
        #expect(status == 128 + SIGKILL, "sleep 600 was killed")
        #expect(!timedOut)
    }
}
