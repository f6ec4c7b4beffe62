import AsyncHTTPClient
import FileFormats
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Rules
import RulesEngineDaemon
import ServiceLifecycle
import ServiceSupport
import Synchronization

/// `rules-engine run --alertmanager URL…`: every firing rule instance is an alert in Prometheus Alertmanager
/// (API v2), posted when it fires, re-posted while it fires, and posted with `endsAt` when it clears.
/// Routing, grouping, silences and receivers are Alertmanager's.
///
/// Several URLs (an HA pair) each get every alert. A post that fails is tried again every `retryInterval`
/// with whatever changed meanwhile; the engine never waits for it.
public final class AlertmanagerNotifier: Service, TransitionObserver {
    public struct Configuration: Sendable {
        /// Alertmanager base URLs (`http://host:9093`); alerts go to `URL/api/v2/alerts`.
        public var endpoints: [String]
        /// How often every firing instance is posted again (Alertmanager forgets an alert after its `endsAt`;
        /// a restarted Alertmanager has none).
        public var resendInterval: Duration = .seconds(60)
        /// How often a failed post is tried again.
        public var retryInterval: Duration = .seconds(5)
        public var requestTimeout: Duration = .seconds(10)
        /// The engine's `--http` address as a URL, for each alert's link to the engine's page.
        public var engineURL: String?

        public init(endpoints: [String]) {
            self.endpoints = endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        }
    }

    /// What the run loop takes from the engine's side: transitions as they come, and the engine itself.
    struct Inbox {
        var transitions: [TransitionRecord] = []
        var engine: RulesEngineService?
    }

    let configuration: Configuration
    let logger: Logger
    let metrics: any MetricsFactory
    private let inbox = Mutex(Inbox())
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    public init(configuration: Configuration, logger: Logger, metrics: any MetricsFactory) {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        wake.yield()  // the first round posts whatever fires already (restored by --state-dir)
    }

    /// The engine whose firing instances are posted again every `resendInterval`; set it before `run()`.
    public func follow(_ engine: RulesEngineService) {
        inbox.withLock { $0.engine = engine }
    }

    public func observe(_ transition: TransitionRecord) {
        inbox.withLock { $0.transitions.append(transition) }
        wake.yield()
    }

    public func run() async throws {
        var rounds = Rounds(endpoints: configuration.endpoints.count)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [wake, retry = configuration.retryInterval] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: retry)
                    wake.yield()
                }
            }
            await withGracefulShutdownHandler {
                for await _ in wakeups { await round(&rounds) }
            } onGracefulShutdown: { [wake] in
                wake.finish()
            }
            group.cancelAll()
        }
        // What the last round could not send (a clear, most likely) gets one more, short try.
        await round(&rounds, timeout: .seconds(2))
    }

    /// Alerts not yet accepted by each endpoint, and what is needed to build the next ones.
    struct Rounds {
        var unsent: [[String: Alert]]
        var healthy: [Bool]
        var firingSince: [String: Int64] = [:]
        var lastResend: ContinuousClock.Instant?

        init(endpoints: Int) {
            unsent = Array(repeating: [:], count: endpoints)
            healthy = Array(repeating: true, count: endpoints)
        }

        mutating func add(_ alert: Alert) {
            for index in unsent.indices { unsent[index][alert.key] = alert }
        }
    }

    private func round(_ rounds: inout Rounds, timeout: Duration? = nil) async {
        let (transitions, engine) = inbox.withLock { inbox in
            defer { inbox.transitions.removeAll() }
            return (inbox.transitions, inbox.engine)
        }
        let now = WallClock.nowMilliseconds()
        let ends = now + 4 * configuration.resendInterval.milliseconds
        let ruleSet = engine?.ruleSet
        let clock = ContinuousClock.now
        if let engine, let ruleSet,
            rounds.lastResend.map({ clock - $0 >= configuration.resendInterval }) ?? true
        {
            rounds.lastResend = clock
            for report in engine.instanceReports() where report.state == .firing {
                guard let rule = ruleSet.rule(withID: report.ruleID) else { continue }
                let labels = Alert.labels(rule: rule.id, severity: rule.severity, captures: report.labels)
                let alert = Alert(
                    labels: labels,
                    annotations: annotations(rule, reason: report.lastReason, value: report.lastValue),
                    startsAt: report.since ?? now,
                    endsAt: ends,
                    generatorURL: link(rule.id)
                )
                rounds.firingSince[alert.key] = alert.startsAt
                rounds.add(alert)
            }
        }
        for transition in transitions {
            let rule = ruleSet?.rule(withID: transition.ruleID)
            let labels = Alert.labels(
                rule: transition.ruleID,
                severity: transition.severity,
                captures: transition.labels
            )
            var alert = Alert(
                labels: labels,
                annotations: annotations(rule, reason: transition.reason, value: transition.value),
                startsAt: transition.timestamp,
                endsAt: ends,
                generatorURL: link(transition.ruleID)
            )
            if transition.transition == .fire {
                rounds.firingSince[alert.key] = transition.timestamp
            } else {
                alert.startsAt = rounds.firingSince.removeValue(forKey: alert.key) ?? transition.timestamp
                alert.endsAt = transition.timestamp
            }
            rounds.add(alert)
        }
        let batches = rounds.unsent
        let results = await withTaskGroup(of: (Int, (any Error)?).self) { group in
            for (index, batch) in batches.enumerated() where !batch.isEmpty {
                group.addTask {
                    do {
                        try await self.post(
                            Array(batch.values),
                            to: self.configuration.endpoints[index],
                            timeout: timeout
                        )
                        return (index, nil)
                    } catch {
                        return (index, error)
                    }
                }
            }
            var results: [(Int, (any Error)?)] = []
            for await result in group { results.append(result) }
            return results
        }
        for (index, error) in results {
            let endpoint = configuration.endpoints[index]
            Counter(
                label: "sensor_pipeline_alertmanager_posts_total",
                dimensions: [("outcome", error == nil ? "sent" : "failed")],
                factory: metrics
            ).increment()
            if let error {
                if rounds.healthy[index] {
                    logger.warning(
                        "cannot post alerts to Alertmanager; trying again",
                        metadata: ["url": "\(endpoint)", "error": "\(error)", "alerts": "\(batches[index].count)"]
                    )
                }
                rounds.healthy[index] = false
            } else {
                if !rounds.healthy[index] {
                    logger.notice("Alertmanager takes alerts again", metadata: ["url": "\(endpoint)"])
                }
                rounds.healthy[index] = true
                // Only what was sent: an alert that changed during the post is sent again.
                for (key, alert) in batches[index] where rounds.unsent[index][key] == alert {
                    rounds.unsent[index][key] = nil
                }
            }
        }
    }

    private func post(_ alerts: [Alert], to endpoint: String, timeout: Duration?) async throws {
        var request = HTTPClientRequest(url: endpoint + "/api/v2/alerts")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: JSONValue.array(alerts.map(\.json)).jsonText))
        let limit = timeout ?? configuration.requestTimeout
        let response = try await HTTPClient.shared.execute(request, timeout: .milliseconds(limit.milliseconds))
        let body = try await response.body.collect(upTo: 64 * 1024)
        guard response.status == .ok else {
            throw AlertmanagerError(status: Int(response.status.code), body: String(buffer: body))
        }
        logger.debug("alerts posted", metadata: ["url": "\(endpoint)", "alerts": "\(alerts.count)"])
    }

    private func annotations(_ rule: Rule?, reason: String?, value: JSONValue?) -> [(name: String, value: String)] {
        let valueText: String
        switch value {
        case .string(let text)?: valueText = text
        case let other?: valueText = other.jsonText
        case nil: valueText = ""
        }
        return [("description", rule?.description ?? ""), ("reason", reason ?? ""), ("value", valueText)]
    }

    private func link(_ ruleID: String) -> String? {
        // Rule ids hold only letters, digits, `_`, `.` and `-`: nothing to escape in a query.
        configuration.engineURL.map { "\($0)/?rule=\(ruleID)" }
    }
}

/// Alertmanager answered something other than 200.
struct AlertmanagerError: Error, CustomStringConvertible {
    var status: Int
    var body: String
    var description: String { "HTTP \(status): \(body.prefix(200))" }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
