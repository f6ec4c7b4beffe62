import Logging
import ServiceLifecycle
import Synchronization

/// An MQTT client over libmosquitto, as a `Service`: `run()` connects and keeps the connection
/// (reconnecting with capped exponential backoff and resubscribing on every connect) until the task
/// is cancelled or a graceful shutdown is triggered; then it disconnects cleanly.
///
/// Call `publish`, `subscribe` and `unsubscribe` from any task while `run()` is running.
/// Received messages arrive on `messages`.
public final class MQTTClient: Service, Sendable {
    /// The configuration the client was made with.
    public let configuration: MQTTConfiguration
    /// The client id in use (generated when the configuration had none).
    public let clientID: String
    /// Received messages.
    public let messages: MQTTMessages

    private let logger: Logger
    private let handle: MosquittoHandle
    private let messageHandler: (@Sendable (MQTTMessage) -> Void)?
    private let messageContinuation: AsyncStream<MQTTMessage>.Continuation
    private let state: Mutex<State>

    /// Creates a client; nothing is connected until `run()`.
    ///
    /// With a `messageHandler`, every message is handed to it on libmosquitto's network thread instead of
    /// `messages`. libmosquitto acknowledges a QoS 1 message only after the handler returns, so a handler
    /// that finishes its work before returning never lets an acknowledged message go unprocessed. It must
    /// be quick and must not wait on the client.
    public init(
        configuration: MQTTConfiguration,
        logger: Logger = Logger(label: "mqtt"),
        messageHandler: (@Sendable (MQTTMessage) -> Void)? = nil
    ) throws {
        let clientID = configuration.clientID ?? MQTTClient.randomClientID()
        guard (5...65535).contains(configuration.keepAliveSeconds) else {
            throw MQTTError(.invalidConfiguration, "keepalive must be 5 to 65535 seconds")
        }
        if let will = configuration.will {
            try MosquittoHandle.validatePublishTopic(will.topic)
        }
        self.configuration = configuration
        var initial = State()
        initial.protocolVersion = configuration.protocolVersion
        self.state = Mutex(initial)
        self.clientID = clientID
        self.messageHandler = messageHandler
        var logger = logger
        logger[metadataKey: "mqtt.client_id"] = "\(clientID)"
        self.logger = logger
        self.handle = try MosquittoHandle(clientID: clientID, cleanSession: configuration.cleanSession)
        try handle.configure(configuration)
        let (stream, continuation) = AsyncStream.makeStream(
            of: MQTTMessage.self,
            bufferingPolicy: .bufferingOldest(max(1, configuration.receiveBufferCapacity))
        )
        self.messages = MQTTMessages(stream: stream)
        self.messageContinuation = continuation
    }

    // MARK: Lifecycle

    /// Connects, then keeps the connection until cancellation or graceful shutdown; then disconnects.
    ///
    /// Throws when the connection fails in a way retrying cannot fix: the broker refused the
    /// credentials, TLS verification failed, the host name does not resolve.
    public func run() async throws {
        try await run(endingAtGracefulShutdown: true)
    }

    /// Like `run()`, but ends only when the task is cancelled, not at a graceful shutdown: for a client that
    /// does its work during a shutdown (the engine's drain connection).
    public func runUntilCancelled() async throws {
        try await run(endingAtGracefulShutdown: false)
    }

    private func run(endingAtGracefulShutdown: Bool) async throws {
        try state.withLock { state in
            guard state.phase == .idle else {
                throw MQTTError(.alreadyRunning, "run() was already called on client '\(clientID)'")
            }
            state.phase = .running
        }
        handle.installCallbacks(receiver: self)
        var outcome: Result<Void, any Error> = .success(())
        do {
            // Once more after the broker refused MQTT 5 (`fallsBackToV311`): libmosquitto's network thread
            // ends on that refusal, so a new one starts, speaking 3.1.1.
            var restarting = false
            repeat {
                if restarting {
                    handle.disconnect()
                    handle.stopLoop()
                }
                try connectAndStartLoop()
                try await waitForTerminationOrFallback()
                restarting = state.withLock { state in
                    defer { state.restartRequested = false }
                    return state.restartRequested && !state.terminationRequested && state.failure == nil
                }
            } while restarting
        } catch {
            outcome = .failure(error)
        }
        handle.disconnect()
        handle.stopLoop()
        handle.uninstallCallbacks()
        close(reason: (try? outcome.get()).map { "client closed" } ?? "client failed")
        logger.debug("closed")
        try outcome.get()

        func waitForTerminationOrFallback() async throws {
            let untilCancelled = {
                try await withTaskCancellationHandler {
                    try await self.waitForTermination()
                } onCancel: {
                    self.requestTermination(failure: nil)
                }
            }
            if endingAtGracefulShutdown {
                try await withGracefulShutdownHandler {
                    try await untilCancelled()
                } onGracefulShutdown: {
                    self.requestTermination(failure: nil)
                }
            } else {
                try await untilCancelled()
            }
        }
    }

    /// Starts connecting with the version in use (blocking only for the TCP/TLS connect) and starts
    /// libmosquitto's network thread, which connects again by itself after a failure.
    private func connectAndStartLoop() throws {
        let version = protocolVersion
        try handle.setProtocolVersion(version)
        let sessionExpiry: UInt32? =
            version == .v5 && !configuration.cleanSession ? configuration.sessionExpirySeconds : nil
        logger.debug("connecting", metadata: ["mqtt.broker": "\(configuration.broker)", "mqtt.version": "\(version)"])
        do {
            try handle.connect(
                host: configuration.broker.host,
                port: configuration.broker.port,
                keepAliveSeconds: configuration.keepAliveSeconds,
                sessionExpirySeconds: sessionExpiry
            )
        } catch let error as MQTTError where !MosquittoHandle.isFatal(error.code ?? 0) {
            // The broker is not there yet: the network thread keeps trying with backoff.
            logger.debug("first connect failed, retrying", metadata: ["error": "\(error)"])
            state.withLock { $0.lastConnectionProblem = error.message }
        }
        try handle.startLoop()
    }

    /// Returns once the client is connected; throws if the connection failed for good or the client closed.
    public func waitUntilConnected() async throws {
        let token = state.withLock { $0.makeToken() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let result: Result<Void, any Error>? = state.withLock { state in
                    if state.connected { return .success(()) }
                    if let failure = state.failure { return .failure(failure) }
                    if state.phase == .closed { return .failure(MQTTError(.closed, "the client is closed")) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.connectionWaiters[token] = continuation
                    return nil
                }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            state.withLock { $0.connectionWaiters.removeValue(forKey: token) }?.resume(throwing: CancellationError())
        }
    }

    /// True while a connection is established.
    public var isConnected: Bool { state.withLock { $0.connected } }

    /// The MQTT version in use: the configuration's, or 3.1.1 after the broker refused 5 (`fallsBackToV311`).
    public var protocolVersion: MQTTConfiguration.ProtocolVersion { state.withLock { $0.protocolVersion } }

    /// Why the client is not connected, as far as libmosquitto said: the first connect's error or the
    /// reason the last connection ended. nil once connected.
    public var lastConnectionProblem: String? { state.withLock { $0.connected ? nil : $0.lastConnectionProblem } }

    /// Closes the connection's sending side now: nothing sent after this reaches the broker, in particular
    /// not the acknowledgement of a message whose handler is running. A message handler calls it to refuse
    /// the message it was given: the broker keeps it for a persistent session and delivers it again on the
    /// next connection. libmosquitto then sees the connection as lost.
    public func shutDownSending() {
        handle.shutDownSending()
    }

    /// Messages dropped because the receive buffer was full.
    public var droppedMessageCount: Int { state.withLock { $0.droppedMessages } }

    /// Messages dropped because their payload exceeded `maximumPayloadSize`.
    public var oversizeMessageCount: Int { state.withLock { $0.oversizeMessages } }

    /// A new stream of connection events, starting with the current state when connected.
    public func connectionEvents() -> AsyncStream<MQTTConnectionEvent> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: MQTTConnectionEvent.self,
            bufferingPolicy: .bufferingNewest(64)
        )
        let token = state.withLock { state -> Int? in
            guard state.phase != .closed else { return nil }
            let token = state.makeToken()
            state.eventContinuations[token] = continuation
            if state.connected { continuation.yield(.connected(sessionPresent: state.sessionPresent)) }
            return token
        }
        guard let token else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.eventContinuations.removeValue(forKey: token) }
        }
        return stream
    }

    // MARK: Operations

    /// Publishes a payload. For QoS 1 and 2 it returns when the broker acknowledged the message;
    /// a message published while disconnected is queued and sent on reconnect, not failed.
    public func publish(
        _ payload: some Collection<UInt8>,
        to topic: String,
        qos: MQTTQoS = .atLeastOnce,
        retain: Bool = false
    ) async throws {
        let receipt = try send(payload, to: topic, qos: qos, retain: retain)
        try await acknowledgement(of: receipt)
    }

    /// What `send` hands back: enough to wait for the broker's acknowledgement.
    public struct PublishReceipt: Sendable {
        let messageID: Int32
        let topic: String
        let qos: MQTTQoS
    }

    /// Hands a message to libmosquitto's network thread without waiting: the publish half of `publish`,
    /// for callers on a hot path (the engine's commands leave from the thread that decided them).
    /// Await `acknowledgement(of:)` for the broker's answer.
    public func send(
        _ payload: some Collection<UInt8>,
        to topic: String,
        qos: MQTTQoS = .atLeastOnce,
        retain: Bool = false
    ) throws -> PublishReceipt {
        let messageID = try handOver(payload, to: topic, qos: qos, retain: retain)
        if qos == .atMostOnce { abandonAcknowledgement(of: messageID) }
        return PublishReceipt(messageID: messageID, topic: topic, qos: qos)
    }

    /// Hands a message to libmosquitto's network thread and calls `completion` once with the outcome: when
    /// the broker acknowledged it (QoS 1 and 2), refused it, or the client closed first; at once for QoS 0.
    /// The completion runs on the network thread (or on the caller's, when the answer came first), so it must
    /// be short. No task and no continuation per message: for callers that send many (the engine's commands).
    public func send(
        _ payload: some Collection<UInt8>,
        to topic: String,
        qos: MQTTQoS = .atLeastOnce,
        retain: Bool = false,
        completion: @escaping @Sendable (Result<Void, MQTTError>) -> Void
    ) throws {
        let messageID = try handOver(payload, to: topic, qos: qos, retain: retain)
        guard qos != .atMostOnce else {
            abandonAcknowledgement(of: messageID)
            completion(.success(()))
            return
        }
        let early = state.withLock { state -> State.Ack? in
            if let ack = state.earlyAcks.removeValue(forKey: messageID) { return ack }
            state.ackCallbacks[messageID] = State.AckCallback(topic: topic, completion: completion)
            return nil
        }
        if let early { completion(MQTTClient.outcome(of: early, topic: topic)) }
    }

    /// Validates and hands one message to libmosquitto; returns its message id.
    private func handOver(
        _ payload: some Collection<UInt8>,
        to topic: String,
        qos: MQTTQoS,
        retain: Bool
    ) throws -> Int32 {
        try MosquittoHandle.validatePublishTopic(topic)
        guard payload.count <= configuration.maximumPayloadSize else {
            throw MQTTError(
                .payloadTooLarge,
                "payload of \(payload.count) bytes for '\(topic)' exceeds the maximum of \(configuration.maximumPayloadSize)"
            )
        }
        try checkRunning()
        let handed =
            try payload.withContiguousStorageIfAvailable { bytes in
                try handle.publish(topic: topic, payload: UnsafeRawBufferPointer(bytes), qos: qos, retain: retain)
            }
            ?? Array(payload).withUnsafeBytes { buffer in
                try handle.publish(topic: topic, payload: buffer, qos: qos, retain: retain)
            }
        if handed.queued {
            logger.debug("publish queued until reconnect", metadata: ["mqtt.topic": "\(topic)"])
        }
        return handed.messageID
    }

    /// A publish's acknowledgement as the outcome a sender sees.
    private static func outcome(of ack: State.Ack, topic: String) -> Result<Void, MQTTError> {
        if case .published(let reasonCode) = ack, reasonCode >= 0x80 {
            return .failure(
                MQTTError(
                    .publishRejected,
                    "the broker rejected the publish to '\(topic)': \(MosquittoHandle.describeConnack(reasonCode, protocolVersion: .v5))",
                    code: reasonCode
                )
            )
        }
        return .success(())
    }

    /// Waits until the broker acknowledged a sent message (at once for QoS 0); throws when it refused it.
    public func acknowledgement(of receipt: PublishReceipt) async throws {
        guard receipt.qos != .atMostOnce else { return }
        let ack = try await acknowledgement(of: receipt.messageID, kind: .publish)
        try MQTTClient.outcome(of: ack, topic: receipt.topic).get()
    }

    /// Publishes a UTF-8 string.
    public func publish(
        _ text: String,
        to topic: String,
        qos: MQTTQoS = .atLeastOnce,
        retain: Bool = false
    ) async throws {
        try await publish(Array(text.utf8), to: topic, qos: qos, retain: retain)
    }

    /// Subscribes and returns the QoS the broker granted for each filter, once the SUBACK arrived.
    ///
    /// The subscription is remembered and renewed on every (re)connect. Waits for a connection if there is
    /// none. Throws `subscriptionRejected` when the broker refuses a filter (for example by ACL).
    @discardableResult
    public func subscribe(to filters: [String], qos: MQTTQoS = .atLeastOnce) async throws -> [MQTTQoS] {
        guard !filters.isEmpty else { return [] }
        for filter in filters { try MosquittoHandle.validateFilter(filter) }
        state.withLock { state in
            for filter in filters { state.subscriptions[filter] = qos }
        }
        let codes: [Int32] = try await retryingOnConnectionLoss {
            let messageID = try handle.subscribe(filters: filters, qos: qos)
            guard case .subscribed(let codes) = try await acknowledgement(of: messageID, kind: .subscribe) else {
                return []
            }
            return codes
        }
        var granted: [MQTTQoS] = []
        for (filter, code) in zip(filters, codes) {
            guard let value = MQTTQoS(rawValue: Int(code)) else {
                _ = state.withLock { $0.subscriptions.removeValue(forKey: filter) }
                throw MQTTError(
                    .subscriptionRejected,
                    "the broker refused the subscription to '\(filter)': \(MosquittoHandle.describeConnack(code, protocolVersion: .v5))",
                    code: code
                )
            }
            if value < qos {
                logger.debug(
                    "broker granted a lower QoS",
                    metadata: ["mqtt.filter": "\(filter)", "mqtt.qos": "\(value)"]
                )
            }
            granted.append(value)
        }
        return granted
    }

    /// Unsubscribes and returns once the broker acknowledged it.
    public func unsubscribe(from filters: [String]) async throws {
        guard !filters.isEmpty else { return }
        state.withLock { state in
            for filter in filters { state.subscriptions.removeValue(forKey: filter) }
        }
        try await retryingOnConnectionLoss {
            let messageID = try handle.unsubscribe(filters: filters)
            _ = try await acknowledgement(of: messageID, kind: .unsubscribe)
        }
    }

    // MARK: Internals

    private func checkRunning() throws {
        try state.withLock { state in
            if let failure = state.failure { throw failure }
            switch state.phase {
            case .running: return
            case .idle: throw MQTTError(.notConnected, "the client is not running: call run() first")
            case .closed: throw MQTTError(.closed, "the client is closed")
            }
        }
    }

    /// Runs `body` once connected; when the connection drops before its acknowledgement, waits and runs it again.
    private func retryingOnConnectionLoss<Result>(_ body: () async throws -> Result) async throws -> Result {
        while true {
            try checkRunning()
            try await waitUntilConnected()
            do {
                return try await body()
            } catch let error as MQTTError where error.kind == .notConnected {
                continue
            }
        }
    }

    private func acknowledgement(of messageID: Int32, kind: State.AckKind) async throws -> State.Ack {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<State.Ack, any Error>) in
                let result: Result<State.Ack, any Error>? = state.withLock { state in
                    if let ack = state.earlyAcks.removeValue(forKey: messageID) { return .success(ack) }
                    if state.phase == .closed { return .failure(MQTTError(.closed, "the client closed")) }
                    // Cancelled before registering: `onCancel` already ran and found nobody to resume.
                    if Task.isCancelled {
                        state.unclaimedMessageIDs.insert(messageID)
                        return .failure(CancellationError())
                    }
                    state.ackWaiters[messageID] = State.AckWaiter(kind: kind, continuation: continuation)
                    return nil
                }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                let waiter = state.ackWaiters.removeValue(forKey: messageID)
                if waiter != nil { state.unclaimedMessageIDs.insert(messageID) }
                return waiter
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Nobody waits for this message id's acknowledgement: drop it whenever it comes.
    private func abandonAcknowledgement(of messageID: Int32) {
        state.withLock { state in
            if state.earlyAcks.removeValue(forKey: messageID) == nil {
                state.unclaimedMessageIDs.insert(messageID)
            }
        }
    }

    private func complete(_ messageID: Int32, with ack: State.Ack) {
        let (waiter, callback) = state.withLock { state -> (State.AckWaiter?, State.AckCallback?) in
            if let callback = state.ackCallbacks.removeValue(forKey: messageID) { return (nil, callback) }
            if let waiter = state.ackWaiters.removeValue(forKey: messageID) { return (waiter, nil) }
            if state.unclaimedMessageIDs.remove(messageID) == nil { state.earlyAcks[messageID] = ack }
            return (nil, nil)
        }
        waiter?.continuation.resume(returning: ack)
        if let callback { callback.completion(MQTTClient.outcome(of: ack, topic: callback.topic)) }
    }

    private func waitForTermination() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let result: Result<Void, any Error>? = state.withLock { state in
                if let failure = state.failure { return .failure(failure) }
                if state.terminationRequested || state.restartRequested { return .success(()) }
                state.terminationWaiter = continuation
                return nil
            }
            if let result { continuation.resume(with: result) }
        }
    }

    private func requestTermination(failure: MQTTError?) {
        let (waiter, connectionWaiters) = state.withLock { state in
            state.terminationRequested = true
            if let failure, state.failure == nil { state.failure = failure }
            let waiter = state.terminationWaiter
            state.terminationWaiter = nil
            var connectionWaiters: [CheckedContinuation<Void, any Error>] = []
            if failure != nil {
                connectionWaiters = Array(state.connectionWaiters.values)
                state.connectionWaiters = [:]
            }
            return (waiter, connectionWaiters)
        }
        if let failure {
            waiter?.resume(throwing: failure)
            for waiter in connectionWaiters { waiter.resume(throwing: failure) }
        } else {
            waiter?.resume()
        }
    }

    private func close(reason: String) {
        let (ackWaiters, ackCallbacks, connectionWaiters, events, failure) = state.withLock { state in
            state.phase = .closed
            state.connected = false
            defer {
                state.ackWaiters = [:]
                state.ackCallbacks = [:]
                state.connectionWaiters = [:]
                state.eventContinuations = [:]
                state.earlyAcks = [:]
                state.unclaimedMessageIDs = []
            }
            return (
                Array(state.ackWaiters.values), Array(state.ackCallbacks.values), Array(state.connectionWaiters.values),
                Array(state.eventContinuations.values), state.failure
            )
        }
        let error = failure ?? MQTTError(.closed, "the client closed before the operation completed")
        for waiter in ackWaiters { waiter.continuation.resume(throwing: error) }
        for callback in ackCallbacks { callback.completion(.failure(error)) }
        for waiter in connectionWaiters { waiter.resume(throwing: error) }
        for continuation in events {
            continuation.yield(.disconnected(reason: reason))
            continuation.finish()
        }
        messageContinuation.finish()
    }

    private func broadcast(_ event: MQTTConnectionEvent, events: [AsyncStream<MQTTConnectionEvent>.Continuation]) {
        for continuation in events { continuation.yield(event) }
    }

    private static func randomClientID() -> String {
        var generator = SystemRandomNumberGenerator()
        return "sensor-pipeline-" + String(generator.next() as UInt64, radix: 36)
    }
}

// MARK: - Network-thread callbacks

extension MQTTClient: MosquittoEventReceiver {
    var maximumPayloadSize: Int { configuration.maximumPayloadSize }

    var wantsLibraryDebugLog: Bool { logger.logLevel <= .trace }

    func mosquittoDidConnect(reasonCode: Int32, sessionPresent: Bool) {
        // 132 (MQTT 5) or 1 (a 3.1.1 broker's own CONNACK): the broker does not speak MQTT 5.
        if [1, 132].contains(reasonCode),
            fallBackToV311(because: "the broker does not speak MQTT 5", when: { _ in true })
        {
            return
        }
        guard reasonCode == 0 else {
            let reason = MosquittoHandle.describeConnack(reasonCode, protocolVersion: protocolVersion)
            // 4/5 (MQTT 3.1.1) and 134/135 (MQTT 5): bad user name or password, not authorized.
            let hint =
                [4, 5, 134, 135].contains(reasonCode)
                ? " (check the user name and password: --username, --password-file or the broker URL)" : ""
            let error = MQTTError(
                .connectionRefused,
                "the broker at \(configuration.broker) refused the connection: \(reason)\(hint)",
                code: reasonCode
            )
            logger.debug("connection refused", metadata: ["reason": "\(reason)"])
            handle.disconnect()
            requestTermination(failure: error)
            return
        }
        // Connected: libmosquitto's per-packet log lines are not wanted until the connection ends (or at trace).
        if !wantsLibraryDebugLog { handle.setLibraryLog(enabled: false) }
        // Renew every subscription first: a resumed session may have none (the broker restarted).
        let subscriptions = state.withLock { $0.subscriptions }
        let byQoS = Dictionary(grouping: subscriptions.keys.sorted(), by: { subscriptions[$0]! })
        for (qos, filters) in byQoS {
            do {
                abandonAcknowledgement(of: try handle.subscribe(filters: filters, qos: qos))
            } catch {
                logger.debug("resubscribe failed", metadata: ["error": "\(error)"])
            }
        }
        let (connectionWaiters, events) = state.withLock { state in
            state.connected = true
            state.everConnected = true
            state.fallingBack = false
            state.sessionPresent = sessionPresent
            defer { state.connectionWaiters = [:] }
            return (Array(state.connectionWaiters.values), Array(state.eventContinuations.values))
        }
        logger.debug(
            "connected",
            metadata: ["mqtt.session_present": "\(sessionPresent)", "mqtt.resubscribed": "\(subscriptions.count)"]
        )
        for waiter in connectionWaiters { waiter.resume() }
        broadcast(.connected(sessionPresent: sessionPresent), events: events)
    }

    /// With `fallsBackToV311`, while speaking MQTT 5 and `condition` holds: switches to 3.1.1 for good, has `run()`
    /// stop this network thread and start one that speaks 3.1.1, and says why once. True when it did.
    private func fallBackToV311(because reason: String, when condition: (State) -> Bool) -> Bool {
        guard configuration.fallsBackToV311,
            let waiter = state.withLock({ state -> CheckedContinuation<Void, any Error>?? in
                guard state.protocolVersion == .v5, condition(state) else { return nil }
                state.protocolVersion = .v311
                state.fallingBack = true
                state.restartRequested = true
                defer { state.terminationWaiter = nil }
                return .some(state.terminationWaiter)
            })
        else { return false }
        waiter?.resume()
        logger.notice(
            "\(reason): connecting again with MQTT 3.1.1",
            metadata: ["mqtt.broker": "\(configuration.broker)"]
        )
        return true
    }

    func mosquittoDidDisconnect(code: Int32) {
        // A broker that closes the connection after an MQTT 5 CONNECT without any CONNACK (RabbitMQ 3.10's MQTT
        // plugin) does not speak MQTT 5 either: the same fallback as a refusal, once, kept for its reconnects.
        if code != 0, !MosquittoHandle.isFatal(code),
            fallBackToV311(
                because: "the broker closed the connection after an MQTT 5 CONNECT without answering",
                when: { !$0.everConnected && !$0.connected && !$0.fallingBack && !$0.terminationRequested }
            )
        {
            return
        }
        handle.setLibraryLog(enabled: true)
        let reason = code == 0 ? "disconnected" : MosquittoHandle.describe(code)
        let (lost, events, lastLog, fellBack) = state.withLock { state in
            defer { state.fallingBack = false }
            state.connected = false
            state.lastConnectionProblem = code == 0 ? nil : "the connection was lost: \(reason)"
            var lost: [State.AckWaiter] = []
            for (messageID, waiter) in state.ackWaiters where waiter.kind != .publish {
                lost.append(waiter)
                state.ackWaiters.removeValue(forKey: messageID)
            }
            return (lost, Array(state.eventContinuations.values), state.lastLibraryError, state.fallingBack)
        }
        logger.debug("disconnected", metadata: ["reason": "\(reason)"])
        let lostError = MQTTError(.notConnected, "connection lost before the acknowledgement")
        for waiter in lost { waiter.continuation.resume(throwing: lostError) }
        broadcast(.disconnected(reason: reason), events: events)
        if MosquittoHandle.isFatal(code), !fellBack {
            let detail = lastLog.map { "\(reason): \($0)" } ?? reason
            requestTermination(
                failure: MQTTError(
                    .connectionFailed,
                    "the connection to \(configuration.broker) failed: \(detail)",
                    code: code
                )
            )
        }
    }

    func mosquittoDidPublish(messageID: Int32, reasonCode: Int32) {
        complete(messageID, with: .published(reasonCode: reasonCode))
    }

    func mosquittoDidSubscribe(messageID: Int32, grantedQoS: [Int32]) {
        complete(messageID, with: .subscribed(grantedQoS))
    }

    func mosquittoDidUnsubscribe(messageID: Int32) {
        complete(messageID, with: .unsubscribed)
    }

    func mosquittoDidReceive(_ message: MQTTMessage) {
        if let messageHandler {
            messageHandler(message)
            return
        }
        if case .dropped = messageContinuation.yield(message) {
            let dropped = state.withLock { state in
                state.droppedMessages += 1
                return state.droppedMessages
            }
            if dropped.isPowerOfTwo {
                logger.debug(
                    "receive buffer full, message dropped",
                    metadata: ["mqtt.topic": "\(message.topic)", "mqtt.dropped_total": "\(dropped)"]
                )
            }
        }
    }

    func mosquittoDidReceiveOversizeMessage(topic: String, size: Int) {
        let count = state.withLock { state in
            state.oversizeMessages += 1
            return state.oversizeMessages
        }
        logger.debug(
            "oversize message dropped",
            metadata: ["mqtt.topic": "\(topic)", "mqtt.size": "\(size)", "mqtt.oversize_total": "\(count)"]
        )
    }

    func mosquittoDidLog(level: Int32, message: String) {
        logger.trace("libmosquitto", metadata: ["message": "\(message)"])
        // MOSQ_LOG_WARNING = 4, MOSQ_LOG_ERR = 8: remembered to explain a failure.
        guard level == 4 || level == 8 else { return }
        state.withLock { $0.lastLibraryError = message }
        // A TLS failure ends libmosquitto's network thread without any callback: its log line is the only signal.
        if level == 8 && message.hasPrefix("OpenSSL Error") {
            requestTermination(
                failure: MQTTError(
                    .connectionFailed,
                    "TLS with \(configuration.broker) failed: \(message) "
                        + "(check --tls-ca and that the broker's certificate names this host)",
                    code: 8
                )
            )
        }
    }
}

// MARK: - State

extension MQTTClient {
    fileprivate struct State {
        enum Phase { case idle, running, closed }
        enum AckKind { case publish, subscribe, unsubscribe }
        enum Ack {
            case published(reasonCode: Int32)
            case subscribed([Int32])
            case unsubscribed
        }
        struct AckWaiter {
            var kind: AckKind
            var continuation: CheckedContinuation<Ack, any Error>
        }

        var phase = Phase.idle
        var connected = false
        var sessionPresent = false
        var failure: MQTTError?
        var terminationRequested = false
        var terminationWaiter: CheckedContinuation<Void, any Error>?
        var subscriptions: [String: MQTTQoS] = [:]
        /// A publish's sender told by `send(_:to:qos:retain:completion:)`.
        struct AckCallback {
            var topic: String
            var completion: @Sendable (Result<Void, MQTTError>) -> Void
        }
        var ackWaiters: [Int32: AckWaiter] = [:]
        var ackCallbacks: [Int32: AckCallback] = [:]
        /// Acknowledgements that arrived before their caller registered to wait.
        var earlyAcks: [Int32: Ack] = [:]
        /// Message ids whose acknowledgements nobody waits for.
        var unclaimedMessageIDs: Set<Int32> = []
        var connectionWaiters: [Int: CheckedContinuation<Void, any Error>] = [:]
        var eventContinuations: [Int: AsyncStream<MQTTConnectionEvent>.Continuation] = [:]
        var droppedMessages = 0
        var oversizeMessages = 0
        var lastLibraryError: String?
        var lastConnectionProblem: String?
        /// The version in use: the configuration's, or 3.1.1 after a fallback.
        var protocolVersion = MQTTConfiguration.ProtocolVersion.v5
        /// The broker refused MQTT 5 and the connection it closes next is expected (not a failure).
        var fallingBack = false
        /// A CONNACK accepted the connection at least once: a later close is a lost connection, never a sign that
        /// the broker does not speak the version.
        var everConnected = false
        /// `run()` is to start the network thread again (after a fallback to 3.1.1).
        var restartRequested = false
        private var nextToken = 0

        mutating func makeToken() -> Int {
            nextToken += 1
            return nextToken
        }
    }
}

extension Int {
    fileprivate var isPowerOfTwo: Bool { self > 0 && (self & (self - 1)) == 0 }
}
