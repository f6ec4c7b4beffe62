import Foundation
import MQTT
import MQTTTestSupport
import Testing

/// `rules-engine run` against a real mosquitto, through the real executable.
@Suite("rules-engine run, live")
struct RulesEngineRunTests {
    static let coolingRule = """
        rules:
          - id: cooling
            topic: "{prefix}/sensors/{room}/temperature"
            above: 30
            clear: 28
            for: 1s
            on_fire:
              - publish: {topic: "{prefix}/actuators/{room}/fan/set", payload: {state: "on"}}
            on_clear:
              - publish: {topic: "{prefix}/actuators/{room}/fan/set", payload: {state: "off"}}
        """

    @Test func forFiresOnTimeWithNoFurtherReading() async throws {
        let harness = try await EngineHarness("for", rules: Self.coolingRule)
        let engine = try await harness.startEngine()
        let sent = Date()
        try await harness.reading("lab", "{\"value\": 31}")
        #expect(try await harness.nextCommand() == "lab/fan on")
        #expect(Date().timeIntervalSince(sent) >= 0.9)
        #expect(await harness.stop(engine) == 0)
    }

    @Test func hysteresisCooldownAndTwoRoomsAtOnce() async throws {
        let rules = Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s\n    cooldown: 1s")
        let harness = try await EngineHarness("rooms", rules: rules)
        let engine = try await harness.startEngine()
        try await harness.reading("a", "31")
        #expect(try await harness.nextCommand() == "a/fan on")
        try await harness.reading("b", "35")
        #expect(try await harness.nextCommand() == "b/fan on")
        try await harness.reading("a", "29")  // inside the band: a keeps running
        try await harness.reading("b", "20")  // b clears, but only after its 1 s cooldown
        #expect(try await harness.nextCommand() == "b/fan off")
        try await harness.reading("a", "28")
        #expect(try await harness.nextCommand() == "a/fan off")
        #expect(await harness.stop(engine) == 0)
        // Its last words count what it evaluated (pipeline-bench reads them).
        #expect(engine.standardError.contains("instances=2 messages=5"))
    }

    @Test func hotReloadAppliesEditsKeepsRulesOnABrokenEditAndKeepsPendingTimers() async throws {
        let harness = try await EngineHarness("reload", rules: Self.coolingRule)
        let engine = try await harness.startEngine()
        // A valid edit: the threshold drops to 20.
        let lowered = Self.coolingRule.replacingOccurrences(
            of: "above: 30\n    clear: 28",
            with: "above: 20\n    clear: 18"
        )
        try await harness.writeRules(lowered)
        try await waitForLog(engine, "rules reloaded")
        try await harness.reading("lab", "25")
        #expect(try await harness.nextCommand() == "lab/fan on")
        // A broken edit is reported with file:line:col and the last good rules keep running.
        try await harness.writeRules(lowered.replacingOccurrences(of: "above: 20", with: "above: 20\n    cooldwn: 1m"))
        try await waitForLog(engine, "rules.yaml:5:5: unknown key 'cooldwn'")
        try await harness.reading("lab", "15")
        #expect(try await harness.nextCommand() == "lab/fan off")
        // An unrelated edit (a new file) keeps a pending `for` timer running.
        try await harness.writeRules(Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 3s"))
        try await waitForLog(engine, "rules reloaded", count: 2)
        try await harness.reading("lab", "35")
        let started = Date()
        try await harness.writeRules(
            "rules:\n  - {id: other, topic: \"{prefix}/sensors/{room}/humidity\", above: 90}\n",
            file: "other.yaml"
        )
        try await waitForLog(engine, "rules reloaded", count: 3)
        #expect(try await harness.nextCommand() == "lab/fan on")
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed >= 2.5 && elapsed < 6, "the pending timer kept its start: \(elapsed) s")
        // Each rule a reload touches is logged by name; a firing instance that starts over says what stays on.
        #expect(engine.standardError.contains("rule=other [RulesEngineDaemon] rule added"), "\(engine.standardError)")
        try await harness.writeRules(Self.coolingRule)
        try await waitForLog(
            engine,
            "firing=1 instances=1 rule=cooling [RulesEngineDaemon] rule changed: its instances start over; firing "
                + "ones end without on_clear, so what they switched on stays as it is until the rule fires and clears again"
        )
        try FileManager.default.removeItem(atPath: harness.rulesDirectory + "/other.yaml")
        try await waitForLog(
            engine,
            "firing=0 instances=0 rule=other [RulesEngineDaemon] rule removed: its instances end"
        )
        try await waitForLog(engine, #"added=[] changed=[] removed=["other"] rules=1"#)
        #expect(await harness.stop(engine) == 0)
    }

    @Test func sighupReloads() async throws {
        let harness = try await EngineHarness("hup", rules: Self.coolingRule)
        let engine = try await harness.startEngine()
        engine.signal(SIGHUP)
        try await waitForLog(engine, "trigger=SIGHUP")
        #expect(await harness.stop(engine) == 0)
    }

    @Test func readingsPublishedWhileTheEngineIsDownAreProcessedAfterRestart() async throws {
        let harness = try await EngineHarness(
            "session",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let first = try await harness.startEngine()
        #expect(await harness.stop(first) == 0)
        try await harness.waitForPresence("offline")
        try await harness.reading("lab", "33")
        let second = try await harness.startEngine()
        #expect(try await harness.nextCommand() == "lab/fan on")
        #expect(await harness.stop(second) == 0)
    }

    @Test func readingsPublishedAfterTheEngineWasKilledAreProcessedAfterRestart() async throws {
        let harness = try await EngineHarness(
            "kill9",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let first = try await harness.startEngine()
        first.signal(SIGKILL)
        _ = await first.waitForExit()
        // The will tells everyone the engine is gone; its session keeps collecting readings.
        try await harness.waitForPresence("offline")
        for value in ["20", "21", "33"] { try await harness.reading("lab", value) }
        let second = try await harness.startEngine()
        let command = try await harness.commands.first { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(command) == "lab/fan on")
        #expect(command.payloadString.contains("\"value\":33"))
        #expect(await harness.stop(second) == 0)
    }

    @Test func theEngineComesBackAfterTheBrokerIsKilled() async throws {
        let harness = try await EngineHarness(
            "brokerkill",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let engine = try await harness.startEngine()
        try await harness.waitForPresence("online")
        try await harness.broker.restart()
        // The engine publishes `online` after it resubscribed on reconnect.
        try await harness.waitForPresence("online")
        try await harness.observer.subscribe(to: ["\(harness.prefix)/barrier"])
        try await harness.publisher.waitUntilConnected()
        try await harness.reading("lab", "35")
        #expect(try await harness.nextCommand() == "lab/fan on")
        #expect(await harness.stop(engine) == 0)
    }

    @Test func aCommandTheActuatorDidNotApplyIsSentAgain() async throws {
        let harness = try await EngineHarness(
            "resend",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let engine = try await harness.startEngine(extraArguments: ["--resend-interval", "500ms"])
        try await harness.reading("lab", "35")
        #expect(try await harness.nextCommand() == "lab/fan on")
        // The actuator missed it and still reports off.
        try await harness.publisher.publish(
            "{\"state\": \"off\"}",
            to: "\(harness.prefix)/actuators/lab/fan/state",
            qos: .atLeastOnce,
            retain: true
        )
        let again = try await harness.commands.first { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(again) == "lab/fan on")
        #expect(again.payloadString.contains("re-sent"))
        #expect(await harness.stop(engine) == 0)
    }

    @Test func sigtermExitsZeroAfterCommandsAreAcknowledged() async throws {
        let harness = try await EngineHarness(
            "sigterm",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let engine = try await harness.startEngine()
        try await harness.reading("lab", "35")
        try await waitForLog(engine, "rule fired")
        #expect(await harness.stop(engine) == 0)
        #expect(try await harness.nextCommand() == "lab/fan on")
        try await harness.waitForPresence("offline")
    }

    @Test func badPayloadsNeverCrashAndNeverCommand() async throws {
        let harness = try await EngineHarness(
            "bad",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let engine = try await harness.startEngine()
        let deep = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
        let bad = [
            "not json", "{\"value\": \"hot\"}", "NaN", "{\"value\": NaN}", "1e999", "{\"value\": 1e999}", deep,
            "{\"value\": true}", "{\"value\": null}", "", "{\"other\": 99}", "\u{0}\u{1}\u{2}",
        ]
        for payload in bad { try await harness.reading("lab", payload) }
        try await harness.publisher.publish(
            [UInt8](repeating: UInt8(ascii: "9"), count: 5 * 1024 * 1024),
            to: "\(harness.prefix)/sensors/lab/temperature",
            qos: .atLeastOnce
        )
        // A hostile topic level never reaches a command topic.
        try await harness.publisher.publish("99", to: "\(harness.prefix)/sensors/x y/temperature", qos: .atLeastOnce)
        // Still alive, and only the good reading commands anything.
        try await harness.reading("lab", "35")
        let command = try await harness.commands.first { $0.topic.hasSuffix("/set") }
        // The first command comes from the good reading, not from any bad one.
        #expect(EngineHarness.describe(command) == "lab/fan on")
        #expect(command.payloadString.contains("\"value\":35"))
        try await waitForLog(engine, "reason=not_a_number")
        try await waitForLog(engine, "reason=unsafe_capture")
        // Oversize messages are dropped by the MQTT client and counted by the engine's clock loop.
        try await waitForLog(engine, "reason=too_large")
        #expect(await harness.stop(engine) == 0)
    }

    @Test func duplicateReadingsAreDroppedAndGapsCounted() async throws {
        let harness = try await EngineHarness(
            "seq",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let engine = try await harness.startEngine()
        try await harness.reading("lab", #"{"value": 35, "seq": 1}"#)
        #expect(try await harness.nextCommand() == "lab/fan on")
        try await harness.reading("lab", #"{"value": 20, "seq": 1}"#)  // a redelivered copy: must not clear
        try await harness.reading("lab", #"{"value": 19, "seq": 1}"#)  // and another, within the same second
        try await harness.reading("lab", #"{"value": 20, "seq": 4}"#)  // 2 and 3 were lost
        let command = try await harness.commands.first { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(command) == "lab/fan off")
        #expect(command.payloadString.contains("\"value\":20"))
        try await waitForLog(engine, "duplicate reading dropped")
        try await waitForLog(engine, "missing=2")
        // The second duplicate was held back by the once-a-second limit; it is reported when its second is over.
        try await waitForLog(engine, "reason=duplicate", count: 2)
        #expect(await harness.stop(engine) == 0)
    }

    /// Two rules whose filters overlap (`…/chilled/{room}/…` and `…/+/{room}/…`) made the broker deliver each
    /// reading once per matching subscription, and the engine evaluated it once per copy: five readings were a
    /// window of ten in every rule, and readings with `seq` were dropped as duplicates. One evaluation per reading.
    @Test func aReadingIsEvaluatedOnceWhateverSubscriptionsMatchIt() async throws {
        let rules = """
            rules:
              - id: chilled-sum
                topic: "{prefix}/sensors/chilled/{room}/temperature"
                sum: 1m
                above: 14.5
                on_fire:
                  - publish: {topic: "{prefix}/actuators/{room}/sum/set", payload: {state: "on"}}
              - id: any-very-hot
                topic: "{prefix}/sensors/+/{room}/temperature"
                above: 1000
              - id: any-room-anything
                topic: "{prefix}/sensors/#"
                below: -1000
            """
        let harness = try await EngineHarness("overlap", rules: rules)
        let engine = try await harness.startEngine()
        for room in ["bare", "seq"] {
            for value in 1...5 {
                let payload = room == "seq" ? #"{"value": \#(value), "seq": \#(value)}"# : "\(value)"
                try await harness.publisher.publish(
                    payload,
                    to: "\(harness.prefix)/sensors/chilled/\(room)/temperature",
                    qos: .atLeastOnce
                )
            }
            // 1 + 2 + 3 + 4 + 5 = 15 passes 14.5 at the fifth reading; evaluated twice, 16 at the fourth.
            let command = try await harness.commands.first { $0.topic.hasSuffix("/set") }
            #expect(EngineHarness.describe(command) == "\(room)/sum on")
            #expect(command.payloadString.contains(#""value":15"#), "\(command.payloadString)")
        }
        #expect(await harness.stop(engine) == 0)
        #expect(engine.standardError.contains("messages=10"), "\(engine.standardError)")
        #expect(!engine.standardError.contains("duplicate reading dropped"), "\(engine.standardError)")
    }

    /// `times` live: one long opening (three `open` readings) is one time; the door that opened twice fires.
    @Test func timesCountsOpeningsNotReadingsLive() async throws {
        let rules = """
            rules:
              - id: door-opened-often
                topic: "{prefix}/sensors/{room}/door"
                times: 2 in 1h
                equals: open
                on_fire:
                  - publish: {topic: "{prefix}/actuators/{room}/alarm/set", payload: {state: "on"}}
            """
        let harness = try await EngineHarness("times", rules: rules)
        let engine = try await harness.startEngine()
        for (room, state) in [("a", "open"), ("a", "open"), ("a", "open"), ("a", "closed")]
            + [("b", "open"), ("b", "closed"), ("b", "open")]
        {
            try await harness.reading(room, #"{"value": "\#(state)"}"#, quantity: "door")
        }
        let command = try await harness.commands.first { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(command) == "b/alarm on")
        #expect(command.payloadString.contains(#""value":2"#), "\(command.payloadString)")
        #expect(await harness.stop(engine) == 0)
    }

    /// `stale` alone, live: the clock fires it when the sensor goes silent, its next reading clears it.
    @Test func staleAloneFiresOnSilenceLive() async throws {
        let rules = """
            rules:
              - id: sensor-silent
                topic: "{prefix}/sensors/{room}/temperature"
                stale: 1s
                on_fire:
                  - publish: {topic: "{prefix}/actuators/{room}/silent/set", payload: {state: "on"}}
                on_clear:
                  - publish: {topic: "{prefix}/actuators/{room}/silent/set", payload: {state: "off"}}
            """
        let harness = try await EngineHarness("stale-alone", rules: rules)
        let engine = try await harness.startEngine()
        try await harness.reading("lab", "21")
        #expect(try await harness.nextCommand() == "lab/silent on")
        try await harness.reading("lab", #"{"value": "anything"}"#)
        #expect(try await harness.nextCommand() == "lab/silent off")
        #expect(await harness.stop(engine) == 0)
    }

    @Test func aStateDirRestartKeepsAFiringInstanceWithoutADuplicateOn() async throws {
        let harness = try await EngineHarness(
            "state",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let first = try await harness.startEngine(stateDir: true)
        try await harness.reading("lab", "35")
        #expect(try await harness.nextCommand() == "lab/fan on")
        #expect(await harness.stop(first) == 0)
        let second = try await harness.startEngine(stateDir: true)
        try await harness.reading("lab", "36")  // still hot: no second "on"
        try await harness.reading("lab", "20")
        #expect(try await harness.nextCommand() == "lab/fan off")
        #expect(await harness.stop(second) == 0)
    }

    @Test func aStateDirRestartAfterKillRemembersSeqSoARedeliveryIsDropped() async throws {
        let harness = try await EngineHarness(
            "seqstate",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let first = try await harness.startEngine(stateDir: true)
        try await harness.reading("lab", #"{"value": 35, "seq": 1}"#)
        #expect(try await harness.nextCommand() == "lab/fan on")
        first.signal(SIGKILL)
        _ = await first.waitForExit()
        let second = try await harness.startEngine(stateDir: true)
        // seq 1 again, as the broker redelivers a reading the killed engine had not acknowledged: it was
        // evaluated (its journal record is there), so it must be dropped, not clear the fan.
        try await harness.reading("lab", #"{"value": 21, "seq": 1}"#)
        try await harness.reading("lab", #"{"value": 36, "seq": 2}"#)
        try await harness.reading("lab", #"{"value": 20, "seq": 3}"#)
        let command = try await harness.commands.first { $0.topic.hasSuffix("/set") }
        #expect(EngineHarness.describe(command) == "lab/fan off")
        #expect(command.payloadString.contains("\"value\":20"))
        try await waitForLog(second, "duplicate reading dropped")
        #expect(await harness.stop(second) == 0)
    }

    @Test func theAuditTrailExplainsEveryTransitionAndCommand() async throws {
        let harness = try await EngineHarness(
            "audit",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let auditFile = harness.stateDirectory + "/audit.jsonl"
        let engine = try await harness.startEngine(extraArguments: ["--audit", auditFile])
        try await harness.reading("lab", "{\"value\": 31.5}")
        #expect(try await harness.nextCommand() == "lab/fan on")
        #expect(await harness.stop(engine) == 0)
        let lines = try String(contentsOfFile: auditFile, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        let transition = try #require(lines.first)
        #expect(transition.contains(#""event":"transition","rule":"cooling","transition":"fire","source":"#))
        #expect(transition.contains("rules.yaml:2\""))
        #expect(transition.contains(#""labels":{"room":"lab"}"#))
        #expect(transition.contains(#""reading":{"ts":"#) && transition.contains(#""value":31.5}"#))
        #expect(transition.contains(#""reason":"value 31.5 above 30""#))
        #expect(transition.contains(#""definition":""#))
        let command = try #require(lines.last)
        #expect(command.contains(#""event":"command""#) && command.contains("/actuators/lab/fan/set"))
    }

    /// A fire that `min_off` holds back against the rule is said as it happens: a warning, an audit line, a
    /// metric and `held_by` in the API (`max_transitions` held a compressor off for 47 minutes with nothing said).
    @Test func aTransitionHeldByMinOffIsVisibleAsItHappens() async throws {
        let rules = Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s\n    min_off: 1h")
        let harness = try await EngineHarness("held", rules: rules)
        let auditFile = harness.stateDirectory + "/audit.jsonl"
        let port = try TestBroker.freePort()
        let engine = try await harness.startEngine(extraArguments: [
            "--audit", auditFile, "--http", "127.0.0.1:\(port)",
        ])
        try await harness.reading("lab", "31")
        #expect(try await harness.nextCommand() == "lab/fan on")
        try await harness.reading("lab", "20")
        #expect(try await harness.nextCommand() == "lab/fan off")
        try await harness.reading("lab", "35")
        try await harness.reading("lab", "36")
        try await waitForLog(engine, "warning rules-engine: held_by=min_off")
        #expect(engine.standardError.contains("rule instance held: its fire waits for min_off"))
        #expect(engine.standardError.components(separatedBy: "rule instance held").count == 2, "said once")
        let instances = try await EngineHTTPTests.get(port, "/api/instances").body
        #expect(instances.contains(#""held_by":"min_off""#), "\(instances)")
        let metrics = try await EngineHTTPTests.get(port, "/metrics").body
        #expect(
            metrics.contains(#"sensor_pipeline_rule_transitions_held_total{rule="cooling",held_by="min_off"} 1"#),
            "\(metrics)"
        )
        #expect(await harness.stop(engine) == 0)
        let audit = try String(contentsOfFile: auditFile, encoding: .utf8)
        #expect(audit.contains(#""event":"held","rule":"cooling","transition":"fire""#), "\(audit)")
        #expect(audit.contains(#""held_by":"min_off""#))
    }

    /// Waits until the engine's log has `text` at least `count` times.
    func waitForLog(_ engine: ChildProcess, _ text: String, count: Int = 1) async throws {
        try await withTimeout(.seconds(20), "log line '\(text)'") {
            while engine.standardError.components(separatedBy: text).count - 1 < count {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }
}

extension RulesEngineRunTests {
    /// `--ha-discovery`: an instance appears as a Home Assistant binary_sensor (retained config), its state turns
    /// ON when it fires and OFF when it clears, and a reload that removes the rule removes the entity.
    @Test func homeAssistantSeesEveryRuleInstance() async throws {
        let harness = try await EngineHarness(
            "ha-view",
            rules: Self.coolingRule.replacingOccurrences(of: "for: 1s", with: "for: 0s")
        )
        let watcher = try MQTTClient(
            configuration: MQTTConfiguration(broker: harness.broker.url, clientID: "\(harness.prefix)-ha")
        )
        let inbox = MessageInbox(watcher)
        let running = Task { try await watcher.run() }
        defer { running.cancel() }
        try await withTimeout(.seconds(20), "watcher connects") { try await watcher.waitUntilConnected() }
        try await watcher.subscribe(
            to: ["homeassistant/binary_sensor/#", "pipeline/engine/\(harness.engineClientID)/instances/#"]
        )
        let engine = try await harness.startEngine(extraArguments: ["--ha-discovery"])
        try await harness.reading("lab", "31")
        #expect(try await harness.nextCommand() == "lab/fan on")
        let config = try await inbox.first(timeout: .seconds(20)) { $0.topic.hasPrefix("homeassistant/") }
        #expect(config.payloadString.contains(#""device_class":"problem""#), "\(config.payloadString)")
        #expect(config.payloadString.contains(#""name":"cooling lab""#), "\(config.payloadString)")
        let on = try await inbox.first(timeout: .seconds(20)) { $0.topic.contains("/instances/") }
        #expect(on.payloadString.hasPrefix(#"{"state":"ON","phase":"firing","rule":"cooling""#), "\(on.payloadString)")
        try await harness.reading("lab", "20")
        #expect(try await harness.nextCommand() == "lab/fan off")
        let off = try await inbox.first(timeout: .seconds(20)) { $0.topic == on.topic }
        #expect(off.payloadString.hasPrefix(#"{"state":"OFF","phase":"inactive""#), "\(off.payloadString)")
        try await harness.writeRules("rules: []\n")
        let removed = try await inbox.first(timeout: .seconds(20)) { $0.topic == config.topic }
        #expect(removed.payload.isEmpty)
        #expect(await harness.stop(engine) == 0)
    }
}
