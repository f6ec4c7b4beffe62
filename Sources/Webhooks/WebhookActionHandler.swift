import AsyncHTTPClient
import FileFormats
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Rules
import RulesEngineDaemon
import ServiceLifecycle
import Synchronization

/// Runs `webhook` actions: POSTs the body as JSON, tries again with backoff on a connection failure, a 5xx
/// or a 429 until the action's timeout, verifies TLS (against `ca_file` when the endpoint names one).
/// A failure is thrown (the dispatcher logs and counts it), never fatal. At most `maximumPerHost` requests
/// to one host are in flight; past it an action fails at once, so a slow endpoint cannot take every slot
/// of the action queue.
///
/// Also a `Service`: run it before the engine in the service group, so that its HTTP client is shut down
/// after the engine has finished its actions.
public final class WebhookActionHandler: ActionHandler, Service {
    public static let maximumPerHost = 32

    let settings: WebhookSettings
    let logger: Logger
    let client: HTTPClient
    private let inFlight = Mutex([String: Int]())
    private let tlsByCAFile: [String: TLSConfiguration]

    public init(settings: WebhookSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        // A redirect is the receiver's misconfiguration: it fails the action (and says where it points).
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        var tls: [String: TLSConfiguration] = [:]
        for caFile in settings.endpoints.compactMap(\.caFile) {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(caFile)
            tls[caFile] = configuration
        }
        tlsByCAFile = tls
    }

    public var name: String { "webhook" }

    public func handles(_ action: RenderedAction) -> Bool {
        if case .webhook = action { true } else { false }
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }

    public func perform(_ action: FiredAction) async throws {
        guard case .webhook(let url, let body, let timeout) = action.action else { return }
        let host = Self.host(of: url)
        let admitted = inFlight.withLock { counts in
            guard counts[host, default: 0] < Self.maximumPerHost else { return false }
            counts[host, default: 0] += 1
            return true
        }
        guard admitted else {
            throw WebhookError("\(Self.maximumPerHost) requests to \(host) are in flight already: not sent")
        }
        defer { inFlight.withLock { $0[host, default: 1] -= 1 } }

        let endpoint = settings.endpoint(for: url)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "sensor-pipeline-rules-engine")
        for header in endpoint?.headers ?? [] { request.headers.add(name: header.name, value: header.value) }
        if let caFile = endpoint?.caFile { request.tlsConfiguration = tlsByCAFile[caFile] }
        request.body = .bytes(ByteBuffer(string: body.jsonText))

        let deadline = ContinuousClock.now + .milliseconds(timeout)
        var delay = Duration.milliseconds(100)
        var attempts = 1
        while true {
            guard let failure = try await attempt(request, url: url, deadline: deadline) else {
                logger.debug("webhook sent", metadata: ["url": "\(url)", "attempts": "\(attempts)"])
                return
            }
            guard ContinuousClock.now + delay < deadline else {
                throw WebhookError(
                    "\(failure.description) (gave up after \(attempts) attempts within \(RuleDuration.format(timeout)))"
                )
            }
            logger.debug("webhook failed; trying again", metadata: ["url": "\(url)", "error": "\(failure)"])
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(2))
            attempts += 1
        }
    }

    /// One POST: nil when the receiver took it, the failure when trying again may help (no connection, a
    /// 5xx, a 429); throws when it cannot (any other answer).
    private func attempt(
        _ request: HTTPClientRequest,
        url: String,
        deadline: ContinuousClock.Instant
    ) async throws -> WebhookError? {
        let response: HTTPClientResponse
        let answer: ByteBuffer
        do {
            let remaining = deadline - ContinuousClock.now
            response = try await client.execute(request, timeout: .nanoseconds(remaining.nanoseconds))
            answer = try await response.body.collect(upTo: 64 * 1024)
        } catch {
            return WebhookError("\(url): \(error)")
        }
        let status = Int(response.status.code)
        if (200..<300).contains(status) { return nil }
        let location = response.headers.first(name: "Location").map { " to \($0)" } ?? ""
        let failure = WebhookError("\(url) answered HTTP \(status)\(location): \(String(buffer: answer).prefix(200))")
        guard status >= 500 || status == 429 else { throw failure }
        return failure
    }

    /// `host[:port]` of a URL, for the in-flight bound.
    static func host(of url: String) -> String {
        String(url.drop { $0 != "/" }.dropFirst(2).prefix { $0 != "/" && $0 != "?" && $0 != "#" })
    }
}

/// Why a webhook action failed.
struct WebhookError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
