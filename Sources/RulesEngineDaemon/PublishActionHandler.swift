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
        try await start(action)()
    }
}

extension PublishActionHandler: ImmediateActionHandler {
    /// Hands the command to the network thread at once; the completion waits for the broker's acknowledgement.
    public func start(_ action: FiredAction) throws -> @Sendable () async throws -> Void {
        guard case .publish(let topic, let payload, let qos, let retain) = action.action else { return {} }
        let receipt = try client.send(
            RenderedAction.payloadBytes(payload),
            to: topic,
            qos: MQTTQoS(rawValue: qos) ?? .atLeastOnce,
            retain: retain
        )
        return { [client] in try await client.acknowledgement(of: receipt) }
    }
}
