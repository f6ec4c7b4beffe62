import FileFormats
import Rules
import Testing

@Suite("Desired state")
struct DesiredStateTests {
    enum Step: Sendable {
        /// The rule commands `state` at `at`.
        case command(String, at: Int64)
        /// The actuator reports `state` at `at`; `resends` says whether that sends the command again.
        case report(String, at: Int64, resends: Bool)
        /// The clock at `at` sends this many commands again.
        case tick(at: Int64, resends: Int)
    }

    struct Scenario: Sendable, CustomTestStringConvertible {
        var name: String
        var steps: [Step]
        var testDescription: String { name }
    }

    static func command(_ state: String, at time: Int64) throws -> FiredAction {
        let rules = try RuleLoader.load([
            RuleSource(
                path: "rules.yaml",
                text: """
                    rules:
                      - id: r
                        topic: "sensors/{device}/temperature"
                        above: 50
                        on_fire:
                          - publish: {topic: "actuators/{device}/x/set", payload: {state: "\(state)"}}
                    """
            )
        ])
        let readings = [Reading(topic: "sensors/d/temperature", payload: "60", timestamp: time)]
        return try #require(Replay.run(rules, readings: readings).actions.first)
    }

    @Test(arguments: [
        Scenario(
            name: "a report that matches sends nothing",
            steps: [.command("on", at: 0), .report("on", at: 10, resends: false), .tick(at: 10_000, resends: 0)]
        ),
        Scenario(
            name: "state names compare without case",
            steps: [
                .command("on", at: 0), .report("ON", at: 10_000, resends: false),
                .report("On", at: 20_000, resends: false),
            ]
        ),
        Scenario(
            name: "another state, once the interval passed, sends again",
            steps: [.command("on", at: 0), .report("off", at: 6000, resends: true)]
        ),
        Scenario(
            name: "another state within the interval waits for the clock",
            steps: [
                .command("on", at: 0), .report("off", at: 1000, resends: false), .tick(at: 4999, resends: 0),
                .tick(at: 5000, resends: 1), .tick(at: 6000, resends: 0), .tick(at: 10_000, resends: 1),
            ]
        ),
        Scenario(
            name: "a report before any command is remembered for nothing",
            steps: [.report("off", at: 0, resends: false), .tick(at: 60_000, resends: 0)]
        ),
        Scenario(
            name: "a new command that matches the report clears the mismatch",
            steps: [
                .command("on", at: 0), .report("off", at: 1000, resends: false), .command("off", at: 2000),
                .tick(at: 60_000, resends: 0),
            ]
        ),
        Scenario(
            name: "a matching report after a mismatch stops the re-sends",
            steps: [
                .command("on", at: 0), .report("off", at: 1000, resends: false),
                .report("on", at: 2000, resends: false), .tick(at: 60_000, resends: 0),
            ]
        ),
    ])
    func scenario(_ scenario: Scenario) throws {
        var desired = DesiredState(retryIntervalMilliseconds: 5000)
        for (index, step) in scenario.steps.enumerated() {
            switch step {
            case .command(let state, let time):
                desired.record(try Self.command(state, at: time), at: time)
            case .report(let state, let time, let resends):
                let again = desired.observe(
                    stateTopic: "actuators/d/x/state",
                    payload: Array("{\"state\": \"\(state)\"}".utf8),
                    at: time
                )
                #expect((again != nil) == resends, "step \(index)")
            case .tick(let time, let resends):
                #expect(desired.dueResends(at: time).count == resends, "step \(index)")
            }
        }
    }

    @Test func aResentCommandSaysWhyAndWhen() throws {
        var desired = DesiredState(retryIntervalMilliseconds: 5000)
        desired.record(try Self.command("on", at: 0), at: 0)
        let observed = desired.observe(stateTopic: "actuators/d/x/state", payload: Array("off".utf8), at: 7000)
        let again = try #require(observed)
        #expect(again.timestamp == 7000)
        #expect(again.reason == "actuator reports 'off', rule wants 'on' (re-sent)")
        guard case .publish(let topic, let payload, _, _) = again.action else { throw DesiredStateError.notAPublish }
        #expect(topic == "actuators/d/x/set")
        #expect(payload["ts"] == .number(7000))
        #expect(payload["reason"] == .string(again.reason))
    }

    enum DesiredStateError: Error { case notAPublish }
}
