/// Thrown by `withTimeout` when the deadline passes first.
public struct TimeoutError: Error, CustomStringConvertible {
    public var description: String

    public init(description: String) {
        self.description = description
    }
}

/// Runs `body`, cancelling it and throwing `TimeoutError` if it has not finished within `duration`.
public func withTimeout<Result: Sendable>(
    _ duration: Duration = .seconds(20),
    _ what: String = "operation",
    _ body: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Result?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: duration)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw TimeoutError(description: "\(what) did not finish within \(duration)")
        }
        return value
    }
}
