import Alertmanager
import ArgumentParser
import CommandLineOptions
import CoreMetrics
import FileFormats
import Logging
import RulesEngineDaemon
import ServiceLifecycle
import Webhooks

/// What `run` connects the engine to besides MQTT: webhook actions (always), Alertmanager (`--alertmanager`)
/// and the Home Assistant view (`--ha-discovery`).
struct Integrations {
    let webhooks: WebhookActionHandler
    let notifier: AlertmanagerNotifier?
    let homeAssistant: HomeAssistantRuleView?

    init(_ run: Run, engineAddress: (host: String, port: Int)?, metrics: any MetricsFactory, logger: Logger) throws {
        do {
            webhooks = WebhookActionHandler(
                settings: try run.webhookConfig.map(WebhookSettings.load) ?? .init(),
                logger: logger
            )
        } catch let error as WebhookSettingsError {
            FileHandleOutput.standardError.write(error.description + "\n")
            throw ExitCode.failure
        }
        if run.alertmanager.isEmpty {
            notifier = nil
        } else {
            for url in run.alertmanager where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
                throw ValidationError("--alertmanager '\(url)' is not an http:// or https:// URL")
            }
            guard let resend = RuleDuration.milliseconds(run.alertmanagerResendInterval), resend > 0 else {
                throw ValidationError(
                    "--alertmanager-resend-interval '\(run.alertmanagerResendInterval)' is not a duration"
                )
            }
            var configuration = AlertmanagerNotifier.Configuration(endpoints: run.alertmanager)
            configuration.resendInterval = .milliseconds(resend)
            configuration.retryInterval = .milliseconds(min(resend, 5000))
            configuration.engineURL = engineAddress.map { "http://\($0.host):\($0.port)" }
            notifier = AlertmanagerNotifier(configuration: configuration, logger: logger, metrics: metrics)
        }
        homeAssistant = run.haDiscovery ? HomeAssistantRuleView(logger: logger) : nil
    }

    /// Adds the webhook handler and the transition observers to the engine's configuration.
    func configure(_ configuration: inout RulesEngineConfiguration) {
        configuration.actionHandlers.append(webhooks)
        if let notifier { configuration.transitionObservers.append(notifier) }
        if let homeAssistant { configuration.transitionObservers.append(homeAssistant) }
    }

    /// The services that follow `engine`, to run after it in the service group.
    func services(following engine: RulesEngineService) -> [any Service] {
        var services: [any Service] = []
        if let notifier {
            notifier.follow(engine)
            services.append(notifier)
        }
        if let homeAssistant {
            homeAssistant.follow(engine)
            services.append(homeAssistant)
        }
        return services
    }
}
