/// An error from the MQTT client, with a message a person can act on.
public struct MQTTError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, coarsely, so callers can branch on it.
    public enum Kind: Hashable, Sendable {
        /// The broker URL or another option is malformed.
        case invalidConfiguration
        /// A topic or filter is not valid for the operation.
        case invalidTopic
        /// The payload is larger than the configured maximum.
        case payloadTooLarge
        /// The broker answered CONNECT with a refusal (bad credentials, not authorized, ...).
        case connectionRefused
        /// The connection failed in a way that retrying will not fix (TLS, protocol, DNS).
        case connectionFailed
        /// The operation needs a connection and there is none.
        case notConnected
        /// The broker rejected a subscription (SUBACK failure code).
        case subscriptionRejected
        /// The broker rejected a publish (MQTT 5 PUBACK/PUBREC reason code).
        case publishRejected
        /// The client was closed before the operation completed.
        case closed
        /// `run()` was called twice.
        case alreadyRunning
        /// Any other error code libmosquitto returned.
        case library
    }

    /// The coarse category.
    public var kind: Kind
    /// The full, readable message.
    public var message: String
    /// The libmosquitto error code or MQTT reason code behind the error, when there is one.
    public var code: Int32?

    /// Creates an error.
    public init(_ kind: Kind, _ message: String, code: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.code = code
    }

    public var description: String { message }
}
