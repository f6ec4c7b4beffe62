/// The MQTT quality-of-service levels.
public enum MQTTQoS: Int, Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
    /// At most once: fire and forget.
    case atMostOnce = 0
    /// At least once: acknowledged with PUBACK, may be duplicated.
    case atLeastOnce = 1
    /// Exactly once: the four-way PUBREC/PUBREL/PUBCOMP handshake.
    case exactlyOnce = 2

    public static func < (lhs: MQTTQoS, rhs: MQTTQoS) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "QoS \(rawValue)" }
}

/// A message received from the broker. Everything is copied out of libmosquitto's buffers.
public struct MQTTMessage: Sendable, Hashable {
    /// The topic it was published to.
    public var topic: String
    /// The payload bytes.
    public var payload: [UInt8]
    /// The QoS it was delivered with.
    public var qos: MQTTQoS
    /// True when the broker delivered it from its retained store.
    public var retain: Bool

    /// Creates a message.
    public init(topic: String, payload: [UInt8], qos: MQTTQoS = .atMostOnce, retain: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }

    /// The payload decoded as UTF-8 (invalid sequences repaired).
    public var payloadString: String { String(decoding: payload, as: UTF8.self) }
}

/// A change of the connection to the broker.
public enum MQTTConnectionEvent: Sendable, Hashable {
    /// CONNACK accepted. `sessionPresent` is true when the broker resumed a persistent session.
    case connected(sessionPresent: Bool)
    /// The connection was lost or closed; the client reconnects by itself unless it was closed.
    case disconnected(reason: String)
}

/// A message the broker publishes on the client's behalf when the client goes away without DISCONNECT.
public struct MQTTWill: Sendable, Hashable {
    /// The topic of the will message.
    public var topic: String
    /// The will payload.
    public var payload: [UInt8]
    /// QoS of the will.
    public var qos: MQTTQoS
    /// Whether the broker retains the will.
    public var retain: Bool

    /// Creates a will; retained by default, as presence topics are.
    public init(topic: String, payload: some Sequence<UInt8>, qos: MQTTQoS = .atLeastOnce, retain: Bool = true) {
        self.topic = topic
        self.payload = Array(payload)
        self.qos = qos
        self.retain = retain
    }
}
