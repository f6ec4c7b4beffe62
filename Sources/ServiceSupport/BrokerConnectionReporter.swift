import FileFormats
import Logging
import MQTT

/// Says when the broker cannot be reached: at warning level with the cause and how the client retries,
/// soon after the connection is missing, then at a decaying rate (5 s, 10 s, 20 s … at most every
/// 5 minutes) while it stays missing, and once more at notice level when it is back.
public struct BrokerConnectionReporter: Sendable {
    let client: MQTTClient
    let logger: Logger
    /// How long a missing connection goes unmentioned (a first connect takes a moment).
    var grace: Duration = .seconds(1)

    public init(client: MQTTClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Watches the connection until cancelled.
    public func run() async throws {
        let clock = ContinuousClock()
        var missingSince: ContinuousClock.Instant?
        var nextReport = clock.now
        var interval = Duration.seconds(5)
        var reported = false
        while !Task.isCancelled {
            let now = clock.now
            if client.isConnected {
                if reported, let missingSince {
                    logger.notice(
                        "connected to the broker again",
                        metadata: [
                            "broker": "\(client.configuration.broker)", "after": "\(Self.format(now - missingSince))",
                        ]
                    )
                }
                (missingSince, reported, interval) = (nil, false, .seconds(5))
            } else if let since = missingSince {
                if now >= nextReport {
                    logger.warning(
                        "cannot reach the broker; retrying",
                        metadata: [
                            "broker": "\(client.configuration.broker)",
                            "cause": "\(client.lastConnectionProblem ?? "no answer yet")",
                            "retry": "every \(retryDescription)",
                            "missing_for": "\(Self.format(now - since))",
                            "next_report_in": "\(Self.format(interval))",
                        ]
                    )
                    reported = true
                    nextReport = now + interval
                    interval = min(interval * 2, .seconds(300))
                }
            } else {
                missingSince = now
                nextReport = now + grace
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    private static func format(_ duration: Duration) -> String {
        RuleDuration.format(
            duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        )
    }

    private var retryDescription: String {
        let configuration = client.configuration
        let minimum = max(1, configuration.reconnectDelayMinimumSeconds)
        let maximum = max(minimum, configuration.reconnectDelayMaximumSeconds)
        return "\(minimum) to \(maximum) s (growing while it fails)"
    }
}
