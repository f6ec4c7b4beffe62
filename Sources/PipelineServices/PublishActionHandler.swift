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
        guard case .publish(let topic, let payload, let qos, let retain) = action.action else { return }
        try await client.publish(
            RenderedAction.payloadBytes(payload),
            to: topic,
            qos: MQTTQoS(rawValue: qos) ?? .atLeastOnce,
            retain: retain
        )
    }
}
