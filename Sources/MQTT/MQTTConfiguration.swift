/// Everything that decides how an `MQTTClient` connects and behaves.
public struct MQTTConfiguration: Sendable {
    /// MQTT protocol versions libmosquitto speaks.
    public enum ProtocolVersion: Sendable, Hashable {
        /// MQTT 3.1.1.
        case v311
        /// MQTT 5.0, the default for the pipeline's own programs.
        case v5
    }

    /// TLS settings. Peer verification (chain and host name) is always on.
    public struct TLS: Sendable, Hashable {
        /// PEM file of the certificate authorities to trust; `nil` uses the system's CA store.
        public var caFile: String?
        /// PEM client certificate, for brokers that authenticate clients by certificate.
        public var certificateFile: String?
        /// PEM private key of the client certificate.
        public var keyFile: String?

        /// Creates TLS settings.
        public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
        }
    }

    /// Where the broker is.
    public var broker: BrokerURL
    /// The client id; a persistent session needs a stable one. `nil` makes a random id.
    public var clientID: String?
    /// User name; overrides the one in the URL.
    public var username: String?
    /// Password; overrides the one in the URL. Never logged.
    public var password: String?
    /// Keepalive interval in seconds (libmosquitto needs at least 5).
    public var keepAliveSeconds: Int = 30
    /// Protocol version.
    public var protocolVersion: ProtocolVersion = .v5
    /// With `.v5`: when the broker refuses MQTT 5 ("unsupported protocol version", as MQTT 3.1.1-only brokers
    /// such as NATS's MQTT listener answer), connect again with MQTT 3.1.1 and stay with it. A persistent
    /// session is then MQTT 3.1.1's clean session off (the broker's own expiry instead of `sessionExpirySeconds`).
    public var fallsBackToV311 = false
    /// Clean session (3.1.1) / clean start (5). `false` keeps the broker-side session across reconnects.
    public var cleanSession: Bool = true
    /// MQTT 5 session expiry when `cleanSession` is false, in seconds. The default keeps a session for a week.
    public var sessionExpirySeconds: UInt32 = 7 * 24 * 3600
    /// The will, if any.
    public var will: MQTTWill?
    /// TLS settings; used when the URL is `mqtts://` or when set explicitly.
    public var tls: TLS?
    /// The first reconnect delay, in whole seconds (libmosquitto's unit; at least 1).
    public var reconnectDelayMinimumSeconds: Int = 1
    /// The cap of the exponential reconnect backoff, in seconds.
    public var reconnectDelayMaximumSeconds: Int = 30
    /// The largest payload published or accepted; larger ones are refused and counted.
    public var maximumPayloadSize: Int = 1 << 20
    /// How many received messages wait for the consumer of `messages` before new ones are dropped and counted.
    public var receiveBufferCapacity: Int = 10_000
    /// How many QoS 1/2 messages may be in flight at once (MQTT 5 receive maximum on our side).
    public var maximumInflightMessages: Int = 1_000

    /// Creates a configuration for a broker.
    public init(broker: BrokerURL, clientID: String? = nil) {
        self.broker = broker
        self.clientID = clientID
        if broker.usesTLS { self.tls = TLS() }
    }

    /// The user name in effect: the explicit one, else the URL's.
    public var effectiveUsername: String? { username ?? broker.username }
    /// The password in effect: the explicit one, else the URL's.
    var effectivePassword: String? { password ?? broker.password }
}
