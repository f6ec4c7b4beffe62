import MQTT
import Synchronization

/// Collects a client's messages from the moment it is made, so a test can take them one by one.
public final class MessageInbox: Sendable {
    private final class Storage: Sendable {
        struct State {
            var pending: [MQTTMessage] = []
            var waiter: CheckedContinuation<MQTTMessage, any Error>?
            var finished = false
        }
        let state = Mutex(State())
    }

    private let storage = Storage()
    private let task: Task<Void, Never>

    /// Starts consuming `client.messages`; make at most one inbox per client.
    public init(_ client: MQTTClient) {
        let storage = self.storage
        task = Task {
            for await message in client.messages {
                let waiter = storage.state.withLock { state -> CheckedContinuation<MQTTMessage, any Error>? in
                    if let waiter = state.waiter {
                        state.waiter = nil
                        return waiter
                    }
                    state.pending.append(message)
                    return nil
                }
                waiter?.resume(returning: message)
            }
            storage.state.withLock { state in
                state.finished = true
                defer { state.waiter = nil }
                return state.waiter
            }?.resume(throwing: TimeoutError(description: "the message stream ended"))
        }
    }

    deinit { task.cancel() }

    /// The next message, or a `TimeoutError` when none arrives within `timeout`.
    public func next(timeout: Duration = .seconds(20)) async throws -> MQTTMessage {
        try await withTimeout(timeout, "waiting for a message") { [storage] in
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation {
                    (continuation: CheckedContinuation<MQTTMessage, any Error>) in
                    let result: Result<MQTTMessage, any Error>? = storage.state.withLock { state in
                        if !state.pending.isEmpty { return .success(state.pending.removeFirst()) }
                        if state.finished { return .failure(TimeoutError(description: "the message stream ended")) }
                        if Task.isCancelled { return .failure(CancellationError()) }
                        state.waiter = continuation
                        return nil
                    }
                    if let result { continuation.resume(with: result) }
                }
            } onCancel: {
                storage.state.withLock { state in
                    defer { state.waiter = nil }
                    return state.waiter
                }?.resume(throwing: CancellationError())
            }
        }
    }

    /// The next `count` messages.
    public func next(_ count: Int, timeout: Duration = .seconds(20)) async throws -> [MQTTMessage] {
        var messages: [MQTTMessage] = []
        for _ in 0..<count { messages.append(try await next(timeout: timeout)) }
        return messages
    }

    /// Skips messages until one satisfies `predicate` and returns it.
    public func first(
        timeout: Duration = .seconds(20),
        where predicate: (MQTTMessage) -> Bool
    ) async throws -> MQTTMessage {
        while true {
            let message = try await next(timeout: timeout)
            if predicate(message) { return message }
        }
    }
}
