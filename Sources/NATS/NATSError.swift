/// An error from the NATS client, with a message a person can act on.
public struct NATSError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, coarsely, so callers can branch on it.
    public enum Kind: Hashable, Sendable {
        /// No server of the list could be reached, or the connection is gone.
        case notConnected
        /// The request got no answer in time (a JetStream or key-value call).
        case timeout
        /// A key-value write was refused because the key's revision is not the one expected (a create of a key
        /// that exists, an update with a stale revision): someone else wrote first.
        case revisionMismatch
        /// The stream, bucket or key does not exist.
        case notFound
        /// The connection was closed before the operation completed.
        case closed
        /// Any other status nats.c returned.
        case library
    }

    /// The coarse category.
    public var kind: Kind
    /// The full, readable message.
    public var message: String
    /// The nats.c status, when there is one.
    public var status: Int32?
    /// The JetStream error code (as in the server's API), when there is one.
    public var jetStreamCode: Int32?

    /// Creates an error.
    public init(_ kind: Kind, _ message: String, status: Int32? = nil, jetStreamCode: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.status = status
        self.jetStreamCode = jetStreamCode
    }

    public var description: String { message }
}
