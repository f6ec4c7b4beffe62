import Dispatch
import Logging

/// Where and how to connect.
public struct NATSConfiguration: Sendable {
    /// Server URLs (`nats://host:port`); the client connects to one and fails over to the others.
    public var servers: [String]
    /// The connection's name, as the servers' monitoring shows it.
    public var name: String
    /// How long a connect, a JetStream request or a key-value call waits for its answer.
    public var requestTimeout: Duration
    /// The pause between reconnection attempts. The client reconnects for ever.
    public var reconnectWait: Duration

    /// Creates a configuration.
    public init(
        servers: [String],
        name: String,
        requestTimeout: Duration = .seconds(5),
        reconnectWait: Duration = .milliseconds(250)
    ) {
        self.servers = servers
        self.name = name
        self.requestTimeout = requestTimeout
        self.reconnectWait = reconnectWait
    }
}

/// A connection to a NATS server or cluster: core publish and subscribe, JetStream streams and key-value
/// buckets. Calls that wait for a server's answer are `async` and run off the cooperative thread pool,
/// each bounded by `requestTimeout`.
public final class NATSConnection: Sendable {
    private let handle: NATSHandle
    private let logger: Logger
    private let requestTimeout: Duration

    /// Disconnections, reconnections, asynchronous errors, and the final close (which ends the sequence).
    public let events: AsyncStream<NATSConnectionEvent>

    private init(
        handle: NATSHandle,
        events: AsyncStream<NATSConnectionEvent>,
        configuration: NATSConfiguration,
        logger: Logger
    ) {
        self.handle = handle
        self.events = events
        self.requestTimeout = configuration.requestTimeout
        self.logger = logger
    }

    /// Connects to one of `configuration.servers`; throws `NATSError` (kind `.notConnected`) when none answers.
    public static func connect(_ configuration: NATSConfiguration, logger: Logger) async throws -> NATSConnection {
        let (events, continuation) = AsyncStream.makeStream(
            of: NATSConnectionEvent.self,
            bufferingPolicy: .bufferingNewest(64)
        )
        let context = NATSConnectionEventContext { event in
            logger.debug("NATS connection event", metadata: ["event": "\(event)"])
            continuation.yield(event)
            if event == .closed { continuation.finish() }
        }
        let handle = try await offload {
            try NATSHandle(
                servers: configuration.servers,
                name: configuration.name,
                requestTimeoutMilliseconds: milliseconds(configuration.requestTimeout),
                reconnectWaitMilliseconds: milliseconds(configuration.reconnectWait),
                events: context
            )
        }
        logger.debug("NATS connected", metadata: ["servers": "\(configuration.servers.joined(separator: ","))"])
        return NATSConnection(handle: handle, events: events, configuration: configuration, logger: logger)
    }

    /// Whether the connection is up now (not reconnecting, not closed).
    public var isConnected: Bool { handle.isConnected }

    /// The URL of the server it is connected to now (`nats://host:port`), nil while disconnected.
    public var connectedServer: String? { handle.connectedServer }

    /// Closes the connection; subscriptions end, later calls fail with `.closed`.
    public func close() {
        handle.close()
    }

    // MARK: Core NATS

    /// Publishes on a subject (at most once; buffered while reconnecting).
    public func publish(_ payload: [UInt8], to subject: String) throws {
        try handle.publish(payload, to: subject)
    }

    /// Waits until the server has processed everything published so far.
    public func flush() async throws {
        let timeout = milliseconds(requestTimeout)
        try await offload { [handle] in try handle.flush(timeoutMilliseconds: timeout) }
    }

    /// Subscribes to a subject (wildcards `*` and `>` allowed). Messages arrive in the order the server sent them.
    public func subscribe(to subject: String) throws -> NATSSubscription<NATSMessage> {
        let (stream, continuation) = AsyncStream.makeStream(of: NATSMessage.self)
        let context = NATSDeliveryContext<NATSMessage>(
            deliver: { continuation.yield($0) },
            finish: { continuation.finish() }
        )
        return NATSSubscription(messages: stream, handle: try handle.subscribe(to: subject, context: context))
    }

    // MARK: JetStream

    /// Creates a file-backed stream capturing `subjects`, or checks that the one that exists has this
    /// configuration (a stream with the name and another configuration is an error).
    public func createStream(
        named name: String,
        subjects: [String],
        replicas: Int = 1,
        maximumAge: Duration? = nil
    ) async throws {
        let age = maximumAge.map { nanoseconds($0) } ?? 0
        try await offload { [handle] in
            try handle.addStream(name: name, subjects: subjects, replicas: replicas, maximumAgeNanoseconds: age)
        }
    }

    /// Publishes into a stream and waits for the stream's acknowledgement; returns the stream sequence it got.
    ///
    /// With `expectedLastSubjectSequence` (not 0), the stream stores the message only when the last message it
    /// holds on `subject` has that sequence, and refuses it otherwise (`NATSError.Kind.revisionMismatch`):
    /// optimistic concurrency, so a writer that is no longer the only one finds out.
    @discardableResult
    public func publishToStream(
        _ payload: [UInt8],
        subject: String,
        expectedLastSubjectSequence: UInt64 = 0
    ) async throws -> UInt64 {
        try await offload { [handle] in
            try handle.publishToStream(
                payload,
                subject: subject,
                expectedLastSubjectSequence: expectedLastSubjectSequence
            )
        }
    }

    /// The last message a stream holds on `subject` (no wildcards), or nil when it holds none.
    public func lastMessage(inStream stream: String, subject: String) async throws -> NATSStreamMessage? {
        try await offload { [handle] in try handle.lastMessage(inStream: stream, subject: subject) }
    }

    /// How many messages a stream holds now.
    public func messageCount(inStream stream: String) async throws -> UInt64 {
        try await offload { [handle] in try handle.messageCount(inStream: stream) }
    }

    /// Reads a stream in order, from `sequence` on (0: from its first message), then live: an ordered
    /// consumer that nats.c recreates at the next sequence after a gap or a server failover.
    public func readStream(
        _ stream: String,
        filter: String,
        from sequence: UInt64 = 0
    ) throws -> NATSSubscription<NATSStreamMessage> {
        let (messages, continuation) = AsyncStream.makeStream(of: NATSStreamMessage.self)
        let context = NATSDeliveryContext<NATSStreamMessage>(
            deliver: { continuation.yield($0) },
            finish: { continuation.finish() }
        )
        let subscription = try handle.readStream(stream, filter: filter, startSequence: sequence, context: context)
        return NATSSubscription(messages: messages, handle: subscription)
    }

    /// Opens a key-value bucket, creating it when it does not exist. With a `ttl`, a key not written for
    /// that long expires: what leases are built on.
    public func keyValue(
        bucket: String,
        history: Int = 1,
        ttl: Duration? = nil,
        replicas: Int = 1
    ) async throws -> NATSKeyValue {
        let ttlNanoseconds = ttl.map { nanoseconds($0) } ?? 0
        let store = try await offload { [handle] in
            try handle.keyValue(bucket: bucket, history: history, ttlNanoseconds: ttlNanoseconds, replicas: replicas)
        }
        return NATSKeyValue(store: store)
    }
}

/// The messages of one subscription, in order. Ends when the subscription or its connection closes;
/// `cancel()` unsubscribes.
public struct NATSSubscription<Element: Sendable>: AsyncSequence, Sendable {
    private let messages: AsyncStream<Element>
    private let handle: NATSSubscriptionHandle

    init(messages: AsyncStream<Element>, handle: NATSSubscriptionHandle) {
        self.messages = messages
        self.handle = handle
    }

    /// Unsubscribes; the sequence ends after what was already delivered.
    public func cancel() {
        handle.unsubscribe()
    }

    /// Keeps the subscription alive while it is iterated (a `for await` over a temporary subscription).
    public struct Iterator: AsyncIteratorProtocol {
        private var base: AsyncStream<Element>.Iterator
        private let handle: NATSSubscriptionHandle

        init(base: AsyncStream<Element>.Iterator, handle: NATSSubscriptionHandle) {
            self.base = base
            self.handle = handle
        }

        public mutating func next() async -> Element? {
            await base.next()
        }
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: messages.makeAsyncIterator(), handle: handle)
    }
}

/// A key-value bucket. Every write returns the key's new revision; `create` and `update(expectedRevision:)`
/// refuse (kind `.revisionMismatch`) when someone else wrote first.
public final class NATSKeyValue: Sendable {
    private let store: NATSKeyValueHandle

    init(store: NATSKeyValueHandle) {
        self.store = store
    }

    /// The bucket's name.
    public var bucket: String { store.bucket }

    /// Writes `key` only if it does not exist (or was deleted or expired).
    public func create(_ key: String, _ value: [UInt8]) async throws -> UInt64 {
        try await offload { [store] in try store.create(key, value) }
    }

    /// Writes `key` only if its revision is still `expectedRevision`.
    public func update(_ key: String, _ value: [UInt8], expectedRevision: UInt64) async throws -> UInt64 {
        try await offload { [store] in try store.update(key, value, expectedRevision: expectedRevision) }
    }

    /// Writes `key` whatever its revision.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8]) async throws -> UInt64 {
        try await offload { [store] in try store.put(key, value) }
    }

    /// The key's current value and revision, or nil when it does not exist (or was deleted or expired).
    public func get(_ key: String) async throws -> NATSKeyValueEntry? {
        try await offload { [store] in try store.get(key) }
    }

    /// The keys that exist now (not deleted, not expired).
    public func keys() async throws -> [String] {
        try await offload { [store] in try store.keys() }
    }

    /// Deletes `key` (a delete marker: a later `create` succeeds).
    public func delete(_ key: String) async throws {
        try await offload { [store] in try store.delete(key) }
    }
}

/// Runs a blocking nats.c call on a Dispatch thread, so the cooperative pool never waits on the network.
private func offload<Result: Sendable>(_ body: @escaping @Sendable () throws -> Result) async throws -> Result {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Swift.Result { try body() })
        }
    }
}

private func milliseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
}

private func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
}
