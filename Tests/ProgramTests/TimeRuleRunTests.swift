import Foundation
import MQTT
import MQTTTestSupport
import Testing

/// Windows and schedules through a real mosquitto: the clock alone moves an instance.
@Suite("rules-engine run with windows and schedules, live")
struct TimeRuleRunTests {
    /// A 3-second average fires on a hot reading and clears by itself when that reading leaves the window,
    /// with no reading after the cool one: exactly 3.001 s after the hot reading.
    @Test func aDurationWindowClearsWithNoNewReading() async throws {
        let rules = """
            rules:
              - id: hot-average
                topic: "{prefix}/sensors/{rack}/temperature"
                avg: 3s
                above: 30
                on_fire:
                  - publish: {topic: "{prefix}/actuators/{rack}/cooling/set", payload: {state: "on"}}
                on_clear:
                  - publish: {topic: "{prefix}/actuators/{rack}/cooling/set", payload: {state: "off"}}
            """
        let harness = try await EngineHarness("window", rules: rules)
        let port = try TestBroker.freePort()
        let engine = try await harness.startEngine(extraArguments: ["--http", "127.0.0.1:\(port)"])
        try await harness.reading("r1", "40")
        let on = try await harness.commands.first(timeout: .seconds(20)) { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(on) == "r1/cooling on")
        try await harness.reading("r1", "25")  // the average is 32.5: still on
        let instances = try await EngineHTTPTests.get(port, "/api/instances").body
        #expect(instances.contains(#""window":{"window":"avg 3s","#), "\(instances)")
        let off = try await harness.commands.first(timeout: .seconds(20)) { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(off) == "r1/cooling off")
        let onTime = try #require(CombinedRuleRunTests.number("ts", in: on.payloadString))
        #expect(CombinedRuleRunTests.number("ts", in: off.payloadString) == onTime + 3001)
        #expect(off.payloadString.contains(#""reason":"avg 3s = 25 at or below 30""#), "\(off.payloadString)")
        #expect(await harness.stop(engine) == 0)
    }

    /// A duration window survives a restart with `--state-dir`: the hot reading taken by the first engine is
    /// still in the second engine's window (a cool reading after the restart does not clear the rule), and the
    /// restored window's expiry clears it at the hot reading's time + the window + 1 ms with no new reading.
    /// A restart slower than the window (a loaded machine) is done again with a longer window.
    @Test func aDurationWindowSurvivesARestart() async throws {
        for seconds in [12, 40] as [Int64] where try await windowAcrossRestart(seconds: seconds) { return }
        Issue.record("the engine never restarted within a 40 s window")
    }

    /// One run of the restart test; false when the cool reading went out after the hot one had (nearly) left.
    func windowAcrossRestart(seconds: Int64) async throws -> Bool {
        let rules = """
            rules:
              - id: hot-average
                topic: "{prefix}/sensors/{rack}/temperature"
                avg: \(seconds)s
                above: 30
                on_fire:
                  - publish: {topic: "{prefix}/actuators/{rack}/cooling/set", payload: {state: "on"}}
                on_clear:
                  - publish: {topic: "{prefix}/actuators/{rack}/cooling/set", payload: {state: "off"}}
            """
        let harness = try await EngineHarness("window-restart", rules: rules)
        let first = try await harness.startEngine(stateDir: true)
        try await harness.reading("r3", "40")
        let on = try await harness.commands.first(timeout: .seconds(20)) { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(on) == "r3/cooling on")
        let onTime = try #require(CombinedRuleRunTests.number("ts", in: on.payloadString))
        #expect(await harness.stop(first) == 0)

        let port = try TestBroker.freePort()
        let second = try await harness.startEngine(stateDir: true, extraArguments: ["--http", "127.0.0.1:\(port)"])
        let restored = try await EngineHTTPTests.get(port, "/api/instances").body
        try await harness.reading("r3", "25")  // with the restored 40 the average is 32.5: still on
        guard Int64(Date().timeIntervalSince1970 * 1000) < onTime + seconds * 1000 - 1000 else {
            _ = await harness.stop(second)
            return false
        }
        #expect(restored.contains(#""window":{"window":"avg \#(seconds)s","value":40,"samples":1"#), "\(restored)")
        let off = try await harness.commands.first(timeout: .seconds(seconds + 20)) { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(off) == "r3/cooling off")
        #expect(CombinedRuleRunTests.number("ts", in: off.payloadString) == onTime + seconds * 1000 + 1)
        #expect(off.payloadString.contains(#""reason":"avg \#(seconds)s = 25 at or below 30""#), "\(off.payloadString)")
        #expect(await harness.stop(second) == 0)
        return true
    }

    /// A schedule that starts a few seconds from now: a reading before it does nothing, its start fires the
    /// rule at the boundary with no reading, and its end clears it at the boundary. The start must come after
    /// the engine is ready and has the reading; on a loaded machine that takes longer, so a run whose reading
    /// went out too late is done again with a later start.
    @Test func aScheduleBoundaryFiresAndClearsAtTheBoundary() async throws {
        for lead in [5, 15, 40] as [Int64] where try await scheduleBoundaries(startingIn: lead) { return }
        Issue.record("the engine never had the reading before the schedule started, even 40 s ahead")
    }

    /// One run of the schedule test; false when the reading left after the schedule had (nearly) started.
    func scheduleBoundaries(startingIn lead: Int64) async throws -> Bool {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let from = (now / 1000 + lead) * 1000
        let to = from + 3000
        func clock(_ milliseconds: Int64) -> String {
            let seconds = milliseconds / 1000 % 86_400
            return String(format: "%02d:%02d:%02d", seconds / 3600, seconds / 60 % 60, seconds % 60)
        }
        let rules = """
            rules:
              - id: scheduled
                topic: "{prefix}/sensors/{rack}/temperature"
                above: 30
                active: {from: "\(clock(from))", to: "\(clock(to))", timezone: UTC}
                on_fire:
                  - publish: {topic: "{prefix}/actuators/{rack}/fan/set", payload: {state: "on"}}
                on_clear:
                  - publish: {topic: "{prefix}/actuators/{rack}/fan/set", payload: {state: "off"}}
            """
        let harness = try await EngineHarness("schedule", rules: rules)
        let engine = try await harness.startEngine()
        try await harness.reading("r2", "35")
        guard Int64(Date().timeIntervalSince1970 * 1000) < from - 500 else {
            _ = await harness.stop(engine)
            return false
        }
        let on = try await harness.commands.first(timeout: .seconds(lead + 20)) { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(on) == "r2/fan on")
        #expect(CombinedRuleRunTests.number("ts", in: on.payloadString) == from)
        let off = try await harness.commands.first(timeout: .seconds(20)) { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(off) == "r2/fan off")
        #expect(CombinedRuleRunTests.number("ts", in: off.payloadString) == to)
        #expect(off.payloadString.contains("outside its schedule"), "\(off.payloadString)")
        #expect(await harness.stop(engine) == 0)
        return true
    }
}
