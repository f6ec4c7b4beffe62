import CMosquitto

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns one `struct mosquitto *` and is the only place that calls libmosquitto functions.
///
/// libmosquitto is thread safe for the calls made here once `mosquitto_loop_start` runs its network
/// thread, hence `@unchecked Sendable`. No Swift lock is ever held while calling into it.
final class MosquittoHandle: @unchecked Sendable {
    private let mosq: OpaquePointer
    private var callbackContext: Unmanaged<MosquittoCallbackContext>?

    private static let libraryInitialized: Bool = {
        mosquitto_lib_init()
        return true
    }()

    init(clientID: String, cleanSession: Bool) throws {
        precondition(Self.libraryInitialized)
        guard let mosq = mosquitto_new(clientID, cleanSession, nil) else {
            throw MosquittoHandle.error(for: MOSQ_ERR_ERRNO.rawValue, doing: "creating the client")
        }
        self.mosq = mosq
    }

    deinit {
        mosquitto_destroy(mosq)
    }

    // MARK: Configuration

    /// The version of the next CONNECT (libmosquitto reads it when it connects or reconnects).
    func setProtocolVersion(_ version: MQTTConfiguration.ProtocolVersion) throws {
        let value = version == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311
        try check(mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, value), doing: "setting the protocol version")
    }

    func configure(_ configuration: MQTTConfiguration) throws {
        try setProtocolVersion(configuration.protocolVersion)
        try check(mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1), doing: "setting TCP_NODELAY")
        let inflight = Int32(clamping: configuration.maximumInflightMessages)
        if configuration.protocolVersion == .v5 {
            try check(mosquitto_int_option(mosq, MOSQ_OPT_RECEIVE_MAXIMUM, inflight), doing: "setting receive maximum")
        }
        try check(mosquitto_max_inflight_messages_set(mosq, UInt32(inflight)), doing: "setting in-flight messages")
        let minimum = UInt32(max(1, configuration.reconnectDelayMinimumSeconds))
        let maximum = UInt32(max(Int(minimum), configuration.reconnectDelayMaximumSeconds))
        try check(mosquitto_reconnect_delay_set(mosq, minimum, maximum, true), doing: "setting the reconnect delay")
        if let username = configuration.effectiveUsername {
            try check(
                mosquitto_username_pw_set(mosq, username, configuration.effectivePassword),
                doing: "setting credentials"
            )
        }
        if let will = configuration.will {
            try will.payload.withUnsafeBytes { bytes in
                try check(
                    mosquitto_will_set_v5(
                        mosq,
                        will.topic,
                        Int32(bytes.count),
                        bytes.baseAddress,
                        Int32(will.qos.rawValue),
                        will.retain,
                        nil
                    ),
                    doing: "setting the will on '\(will.topic)'"
                )
            }
        }
        if let tls = configuration.tls {
            if tls.caFile == nil {
                try check(mosquitto_int_option(mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1), doing: "loading system CAs")
            }
            try check(
                mosquitto_tls_set(mosq, tls.caFile, nil, tls.certificateFile, tls.keyFile, nil),
                doing: "loading TLS files"
            )
            // 1 is SSL_VERIFY_PEER; host name verification stays on (tls_insecure is never set).
            try check(mosquitto_tls_opts_set(mosq, 1, nil, nil), doing: "setting TLS options")
            try check(mosquitto_tls_insecure_set(mosq, false), doing: "enabling host name verification")
        }
    }

    // MARK: Callbacks

    /// Routes libmosquitto's callbacks to `receiver` until `uninstallCallbacks()`; the receiver is retained meanwhile.
    func installCallbacks(receiver: any MosquittoEventReceiver) {
        let context = Unmanaged.passRetained(MosquittoCallbackContext(receiver: receiver))
        callbackContext = context
        mosquitto_user_data_set(mosq, context.toOpaque())
        MosquittoCallbackContext.register(on: mosq)
    }

    /// Turns the forwarding of libmosquitto's log lines on or off (see `MosquittoCallbackContext.setLibraryLog`).
    func setLibraryLog(enabled: Bool) {
        MosquittoCallbackContext.setLibraryLog(on: mosq, enabled: enabled)
    }

    /// Call only after the network thread stopped.
    func uninstallCallbacks() {
        mosquitto_user_data_set(mosq, nil)
        callbackContext?.release()
        callbackContext = nil
    }

    // MARK: Connection

    /// Starts connecting (blocking only for the TCP/TLS connect) with MQTT 5 CONNECT properties.
    func connect(host: String, port: Int, keepAliveSeconds: Int, sessionExpirySeconds: UInt32?) throws {
        var properties: OpaquePointer?
        defer { mosquitto_property_free_all(&properties) }
        if let sessionExpirySeconds {
            let identifier = Int32(MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue)
            try check(
                mosquitto_property_add_int32(&properties, identifier, sessionExpirySeconds),
                doing: "setting the session expiry"
            )
        }
        try check(
            mosquitto_connect_bind_v5(mosq, host, Int32(port), Int32(keepAliveSeconds), nil, properties),
            doing: "connecting to \(host):\(port)"
        )
    }

    func startLoop() throws {
        try check(mosquitto_loop_start(mosq), doing: "starting the network thread")
    }

    /// Waits for the network thread to end (it ends after `disconnect()` or a fatal error).
    func stopLoop() {
        _ = mosquitto_loop_stop(mosq, false)
    }

    /// Sends DISCONNECT (no will) and tells the network thread to stop reconnecting.
    func disconnect() {
        _ = mosquitto_disconnect_v5(mosq, 0, nil)
    }

    /// Shuts the socket's sending side: the kernel sends what it already has, then FIN; libmosquitto's next
    /// write fails and it treats the connection as lost.
    func shutDownSending() {
        let socket = mosquitto_socket(mosq)
        if socket >= 0 { _ = shutdown(socket, Int32(SHUT_WR)) }
    }

    // MARK: Operations

    /// Publishes; returns the message id. `queued` is true when libmosquitto kept a QoS 1/2 message
    /// for the next connection because there is none now: it will be sent then, so it must not be retried.
    func publish(
        topic: String,
        payload: UnsafeRawBufferPointer,
        qos: MQTTQoS,
        retain: Bool
    ) throws -> (
        messageID: Int32, queued: Bool
    ) {
        var messageID: Int32 = 0
        let rc = mosquitto_publish_v5(
            mosq,
            &messageID,
            topic,
            Int32(payload.count),
            payload.baseAddress,
            Int32(qos.rawValue),
            retain,
            nil
        )
        if rc == MOSQ_ERR_NO_CONN.rawValue && qos != .atMostOnce {
            return (messageID, true)
        }
        try check(rc, doing: "publishing to '\(topic)'")
        return (messageID, false)
    }

    func subscribe(filters: [String], qos: MQTTQoS) throws -> Int32 {
        try withCStringArray(filters) { array in
            var messageID: Int32 = 0
            try check(
                mosquitto_subscribe_multiple(
                    mosq,
                    &messageID,
                    Int32(filters.count),
                    array,
                    Int32(qos.rawValue),
                    0,
                    nil
                ),
                doing: "subscribing to \(filters)"
            )
            return messageID
        }
    }

    func unsubscribe(filters: [String]) throws -> Int32 {
        try withCStringArray(filters) { array in
            var messageID: Int32 = 0
            try check(
                mosquitto_unsubscribe_multiple(mosq, &messageID, Int32(filters.count), array, nil),
                doing: "unsubscribing from \(filters)"
            )
            return messageID
        }
    }

    // MARK: Validation and messages

    /// Throws unless `topic` is a valid topic to publish to (no wildcards, valid UTF-8, no NUL, not empty).
    static func validatePublishTopic(_ topic: String) throws {
        guard !topic.isEmpty else { throw MQTTError(.invalidTopic, "cannot publish to an empty topic") }
        guard !topic.utf8.contains(0) else {
            throw MQTTError(.invalidTopic, "topic '\(topic.debugDescription)' contains a NUL character")
        }
        let utf8 = Array(topic.utf8)
        guard mosquitto_pub_topic_check2(topic, utf8.count) == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError(
                .invalidTopic,
                "cannot publish to '\(topic)': wildcards + and # are only allowed in filters"
            )
        }
    }

    /// Throws unless `filter` is a valid subscription filter.
    static func validateFilter(_ filter: String) throws {
        guard !filter.isEmpty, !filter.utf8.contains(0),
            mosquitto_sub_topic_check2(filter, filter.utf8.count) == MOSQ_ERR_SUCCESS.rawValue
        else {
            throw MQTTError(
                .invalidTopic,
                "invalid topic filter '\(filter)': + must fill a whole level and # must be the last level"
            )
        }
    }

    /// The readable text for a libmosquitto error code.
    static func describe(_ code: Int32) -> String {
        if code == MOSQ_ERR_ERRNO.rawValue {
            let number = errno
            return String(cString: strerror(number)) + " (errno \(number))"
        }
        return String(cString: mosquitto_strerror(code))
    }

    /// The readable text for a CONNACK reason code.
    static func describeConnack(_ code: Int32, protocolVersion: MQTTConfiguration.ProtocolVersion) -> String {
        switch protocolVersion {
        case .v5: String(cString: mosquitto_reason_string(code))
        case .v311: String(cString: mosquitto_connack_string(code))
        }
    }

    /// Errors after which libmosquitto's network thread gives up (see `mosquitto_loop_forever`).
    static func isFatal(_ code: Int32) -> Bool {
        let fatal: [mosq_err_t] = [
            MOSQ_ERR_NOMEM, MOSQ_ERR_PROTOCOL, MOSQ_ERR_INVAL, MOSQ_ERR_NOT_FOUND, MOSQ_ERR_TLS,
            MOSQ_ERR_PAYLOAD_SIZE, MOSQ_ERR_NOT_SUPPORTED, MOSQ_ERR_AUTH, MOSQ_ERR_ACL_DENIED,
            MOSQ_ERR_UNKNOWN, MOSQ_ERR_EAI, MOSQ_ERR_PROXY, MOSQ_ERR_TLS_HANDSHAKE,
        ]
        return fatal.contains { $0.rawValue == code }
    }

    static func isNoConnection(_ code: Int32) -> Bool {
        code == MOSQ_ERR_NO_CONN.rawValue
    }

    static func error(for code: Int32, doing what: String) -> MQTTError {
        let kind: MQTTError.Kind
        switch code {
        case MOSQ_ERR_NO_CONN.rawValue: kind = .notConnected
        case MOSQ_ERR_PAYLOAD_SIZE.rawValue, MOSQ_ERR_OVERSIZE_PACKET.rawValue: kind = .payloadTooLarge
        case MOSQ_ERR_TLS.rawValue, MOSQ_ERR_TLS_HANDSHAKE.rawValue, MOSQ_ERR_EAI.rawValue,
            MOSQ_ERR_PROTOCOL.rawValue:
            kind = .connectionFailed
        case MOSQ_ERR_CONN_REFUSED.rawValue, MOSQ_ERR_AUTH.rawValue: kind = .connectionRefused
        case MOSQ_ERR_INVAL.rawValue, MOSQ_ERR_MALFORMED_UTF8.rawValue: kind = .invalidConfiguration
        default: kind = .library
        }
        return MQTTError(kind, "\(what): \(describe(code))", code: code)
    }

    private func check(_ code: Int32, doing what: String) throws {
        guard code == MOSQ_ERR_SUCCESS.rawValue else { throw Self.error(for: code, doing: what) }
    }

    private func withCStringArray<Result>(
        _ strings: [String],
        _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) throws -> Result
    ) throws -> Result {
        let pointers = strings.map { strdup($0) }
        defer { for pointer in pointers { free(pointer) } }
        return try pointers.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }
}
