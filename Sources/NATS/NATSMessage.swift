/// A message received on a core NATS subscription.
public struct NATSMessage: Sendable, Hashable {
    /// The subject it was published on.
    public var subject: String
    /// The payload bytes.
    public var payload: [UInt8]

    /// Creates a message.
    public init(subject: String, payload: [UInt8]) {
        self.subject = subject
        self.payload = payload
    }
}

/// A message read from a JetStream stream, with its place in the stream.
public struct NATSStreamMessage: Sendable, Hashable {
    /// The subject it was stored under.
    public var subject: String
    /// The payload bytes.
    public var payload: [UInt8]
    /// Its sequence in the stream: strictly increasing, the position a reader can start again from.
    public var streamSequence: UInt64
    /// When the stream stored it, in nanoseconds since the Unix epoch.
    public var storedAtNanoseconds: Int64
    /// How many messages of the reader's filter the stream held after this one when it was delivered: 0 means
    /// the reader has caught up with the stream (what came before was a backlog, what follows is live).
    public var pendingAfter: UInt64

    /// Creates a message.
    public init(
        subject: String,
        payload: [UInt8],
        streamSequence: UInt64,
        storedAtNanoseconds: Int64,
        pendingAfter: UInt64 = 0
    ) {
        self.subject = subject
        self.payload = payload
        self.streamSequence = streamSequence
        self.storedAtNanoseconds = storedAtNanoseconds
        self.pendingAfter = pendingAfter
    }
}

/// An entry of a key-value bucket.
public struct NATSKeyValueEntry: Sendable, Hashable {
    /// The key.
    public var key: String
    /// The value bytes.
    public var value: [UInt8]
    /// The revision: the bucket stream's sequence of this write. A write that names it as expected succeeds
    /// only if nobody wrote the key since, so it serves as a fencing token.
    public var revision: UInt64

    /// Creates an entry.
    public init(key: String, value: [UInt8], revision: UInt64) {
        self.key = key
        self.value = value
        self.revision = revision
    }
}
