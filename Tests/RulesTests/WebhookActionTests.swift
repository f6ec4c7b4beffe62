import FileFormats
import Foundation
import Rules
import Testing

@Suite("The webhook action: validation, rendering, replay, rule tests")
struct WebhookActionTests {
    typealias Problem = RuleLoaderTests.Problem

    static let base = RuleLoaderTests.base + "    above: 30\n    on_fire:\n"

    @Test(arguments: [
        Problem(
            name: "a webhook without a url",
            text: base + "      - webhook: {body: {a: 1}}\n",
            line: 6,
            column: 18,
            message: "a webhook action needs a 'url'"
        ),
        Problem(
            name: "a url that is not http",
            text: base + "      - webhook: {url: \"ftp://host/x\"}\n",
            line: 6,
            column: 24,
            message: "webhook url 'ftp://host/x' must be an http:// or https:// URL without spaces"
        ),
        Problem(
            name: "a placeholder in the host",
            text: base + "      - webhook: {url: \"https://{rack}.example.org/x\"}\n",
            line: 6,
            column: 24,
            message: "placeholders go in the path or query, not the host"
        ),
        Problem(
            name: "a placeholder the rule cannot fill",
            text: base + "      - webhook: {url: \"https://example.org/{room}\"}\n",
            line: 6,
            column: 24,
            message: "placeholder {room} is not captured by the rule's topic"
        ),
        Problem(
            name: "an unknown key",
            text: base + "      - webhook: {url: \"https://example.org/\", headers: {a: b}}\n",
            line: 6,
            column: 48,
            message: "unknown key 'headers' in a webhook action"
        ),
        Problem(
            name: "a zero timeout",
            text: base + "      - webhook: {url: \"https://example.org/\", timeout: 0}\n",
            line: 6,
            column: 57,
            message: "'timeout' must be longer than 0"
        ),
    ])
    func reportsProblem(_ problem: Problem) {
        RuleLoaderTests().reportsProblem(problem)
    }

    /// The URL's placeholders are percent-encoded; a body object gets the keys it lacks; no body is what
    /// happened as one object; replay prints `webhook` and `body`.
    @Test func rendersAndReplays() throws {
        let rules = try loadRules(
            """
            rules:
              - id: hot
                topic: sensors/{rack}/temperature
                above: 30
                severity: critical
                on_fire:
                  - webhook: {url: "https://example.org/hook?why={reason}&rack={rack}", body: {text: "{rack}"}}
                  - webhook: {url: "https://example.org/all"}
            """
        )
        let outcome = Replay.run(
            rules,
            readings: [Reading(topic: "sensors/r-1/temperature", payload: "31", timestamp: 1000)],
            end: nil
        )
        #expect(
            outcome.actions.map(Replay.jsonLine) == [
                #"{"ts":1000,"rule":"hot","transition":"fire","webhook":"https://example.org/hook?why=value%2031%20above%2030&rack=r-1","body":{"text":"r-1","rule":"hot","reason":"value 31 above 30","value":31,"ts":1000}}"#,
                #"{"ts":1000,"rule":"hot","transition":"fire","webhook":"https://example.org/all","body":{"rule":"hot","transition":"fire","labels":{"rack":"r-1"},"severity":"critical","reason":"value 31 above 30","value":31,"ts":1000}}"#,
            ]
        )
    }

    /// A rule test can expect a webhook by its URL and a part of its body.
    @Test func ruleTestsExpectWebhooks() throws {
        let rules = try loadRules(
            """
            rules:
              - id: hot
                topic: sensors/{rack}/temperature
                above: 30
                on_fire:
                  - webhook: {url: "https://example.org/{rack}", body: {state: "hot"}}
            """
        )
        func run(_ expectation: String) throws -> Bool {
            let suite = try RuleTestSuite.parse(
                RuleSource(
                    path: "hot.test.yaml",
                    text: """
                        rule_files: [rules.yaml]
                        tests:
                          - name: hook
                            readings:
                              - {at: 0s, topic: sensors/r1/temperature, payload: 31}
                            expect:
                              - {at: 0s, rule: hot, transition: fire, \(expectation)}
                        """
                )
            )
            return try #require(suite.run(with: rules).first).passed
        }
        #expect(try run(#"webhook: "https://example.org/r1", payload: {state: hot}"#))
        #expect(try !run(#"webhook: "https://example.org/r2""#))
        #expect(try !run(#"webhook: "https://example.org/r1", payload: {state: cold}"#))
    }
}
