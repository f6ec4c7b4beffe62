import Foundation
import Testing

@testable import RulesEngineDaemon

/// `command:` actions: a program with arguments, bounded by its timeout.
@Suite("command actions")
struct CommandActionHandlerTests {
    /// A grandchild that keeps the output pipe open must not hold the action past its timeout, and the
    /// whole process group dies at the deadline.
    @Test func theTimeoutBoundsACommandWhoseGrandchildHoldsThePipe() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let started = ContinuousClock.now
        let (_, _, timedOut) = try await CommandActionHandler.run(
            ["sh", "-c", "sleep 30 & echo $! > \(pidFile); sleep 30"],
            timeoutMilliseconds: 500
        )
        let took = ContinuousClock.now - started
        #expect(timedOut)
        #expect(took < .seconds(20), "took \(took): the grandchild sleeps 30 s")
        let grandchild = try #require(
            Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        )
        // Killed with its group (an orphan is reaped by init; wait for that, boundedly).
        var gone = false
        for _ in 0..<200 where !gone {
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
    @Test func cancellingTheActionKillsItsProcessGroup() async throws {
        let started = ContinuousClock.now
        let task = Task { try await CommandActionHandler.run(["sleep", "30"], timeoutMilliseconds: 60_000) }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        _ = try? await task.value
        #expect(ContinuousClock.now - started < .seconds(20), "sleep 30 was killed")
    }
}
