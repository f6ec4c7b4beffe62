import Foundation
import MQTT

/// Runs `clients` (each `run()` in a child task), waits until all are connected, runs `body`,
/// then cancels them, which disconnects each cleanly.
@discardableResult
public func withRunning<Result: Sendable>(
    _ clients: [MQTTClient],
    _ body: () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for client in clients {
            group.addTask { try await client.run() }
        }
        do {
            for client in clients {
                try await withTimeout(.seconds(20), "connecting \(client.clientID)") {
                    try await client.waitUntilConnected()
                }
            }
            let result = try await body()
            group.cancelAll()
            try await group.waitForAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}

/// A topic prefix no other test uses.
public func uniqueTopicPrefix(_ name: String = "test") -> String {
    "\(name)-\(UInt32.random(in: 0...UInt32.max))"
}

/// The folder of the built products (the test binary's own folder), where the package's executables are.
public func builtProductPath(_ name: String) -> String {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return executable.deletingLastPathComponent().appendingPathComponent(name).path
}
