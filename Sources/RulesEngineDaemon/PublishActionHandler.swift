import MQTT
import Rules

/// Publishes a control event over MQTT and returns once the broker acknowledged it (QoS 1/2).
public struct PublishActionHandler: ActionHandler {
    let client: MQTTClient

    public init(client: MQTTClient) {
        self.client = client
    }

    public func handles(_ action: RenderedAction) -> Bool {
        if case .publish = action { return true }
        return false
    }

    public func perform(_ action: FiredAction) async throws {
        try await withCheckedThrowingContinuation { continuation in
            do {
                try start(action) { continuation.resume(with: $0) }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }
}

extension PublishActionHandler: ImmediateActionHandler {
    /// Hands the command to the network thread at once; `completion` runs when the broker acknowledged it.
    public func start(
        _ action: FiredAction,
        completion: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) throws {
        guard case .publish(let topic, let payload, let qos, let retain) = action.action else {
            return completion(.success(()))
        }
        try client.send(
            RenderedAction.payloadBytes(payload),
            to: topic,
            qos: MQTTQoS(rawValue: qos) ?? .atLeastOnce,
            retain: retain
        ) { result in completion(result.mapError { $0 }) }
    }
}
