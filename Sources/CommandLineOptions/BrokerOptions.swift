import ArgumentParser
import Foundation
import MQTT

/// The broker options every connecting program takes, per the contract:
/// `--broker URL` (or `MQTT_BROKER`), `--username`, `--password-file`, `--client-id`, `--tls-ca`,
/// `--tls-cert`, `--tls-key`. A password comes only from the URL or the password file.
public struct BrokerOptions: ParsableArguments, Sendable {
    @Option(
        help:
            "Broker URL: mqtt://[user[:password]@]host[:port] or mqtts://… (default: $MQTT_BROKER or mqtt://127.0.0.1:1883)."
    )
    public var broker: String?

    @Option(help: "User name (overrides the URL's).")
    public var username: String?

    @Option(help: "A file whose first line is the password.")
    public var passwordFile: String?

    @Option(help: "MQTT client id (stable ids keep persistent sessions).")
    public var clientID: String?

    @Option(help: "PEM file of the CA to trust for mqtts:// (default: the system's).")
    public var tlsCA: String?

    @Option(help: "PEM client certificate for mqtts://.")
    public var tlsCert: String?

    @Option(help: "PEM key of the client certificate.")
    public var tlsKey: String?

    @Option(help: "MQTT keepalive in seconds: a silently dead connection is noticed within about twice this.")
    public var keepalive: Int = 30

    @Option(
        help: "MQTT version: 3.1.1 or 5 (default: 5, and 3.1.1 once, with a log line, when the broker refuses 5)."
    )
    public var mqttVersion: String?

    public init() {}

    /// The configuration these options describe; `defaultClientID` is used when `--client-id` is absent.
    public func configuration(
        defaultClientID: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> MQTTConfiguration {
        let urlText = broker ?? environment["MQTT_BROKER"] ?? "mqtt://127.0.0.1:1883"
        var configuration = MQTTConfiguration(
            broker: try BrokerURL(parsing: urlText),
            clientID: clientID ?? defaultClientID
        )
        guard (5...65535).contains(keepalive) else {
            throw ValidationError("--keepalive must be between 5 and 65535 seconds")
        }
        configuration.keepAliveSeconds = keepalive
        switch mqttVersion {
        case nil: configuration.fallsBackToV311 = true
        case "5", "5.0": configuration.protocolVersion = .v5
        case "3.1.1", "311", "4": configuration.protocolVersion = .v311
        case let other?: throw ValidationError("--mqtt-version '\(other)' must be 3.1.1 or 5")
        }
        if let username { configuration.username = username }
        if let passwordFile {
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                throw ValidationError("cannot read --password-file \(passwordFile)")
            }
            configuration.password = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
                .trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
        }
        if tlsCA != nil || tlsCert != nil || tlsKey != nil || configuration.broker.usesTLS {
            guard (tlsCert == nil) == (tlsKey == nil) else {
                throw ValidationError("--tls-cert and --tls-key go together")
            }
            configuration.tls = .init(caFile: tlsCA, certificateFile: tlsCert, keyFile: tlsKey)
        }
        return configuration
    }
}
