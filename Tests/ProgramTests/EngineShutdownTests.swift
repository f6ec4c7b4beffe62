import Foundation
import MQTT
import MQTTTestSupport
import Testing

/// What SIGTERM does, through the real programs and a real mosquitto (docs/engine.md, "SIGTERM").
@Suite("SIGTERM, live")
struct EngineShutdownTests {
    /// Every reading flips its sensor's instance (values alternate 60 / 40), so every evaluated reading
    /// is one transition and one command in the audit trail; a command's value names its reading.
    static let flipRule = """
        rules:
          - id: flip
            topic: "{prefix}/sensors/{device}/temperature"
            above: 50
            on_fire:
              - publish: {topic: "{prefix}/actuators/{device}/cooling/set", payload: {state: "on", value: "{value}"}}
            on_clear:
              - publish: {topic: "{prefix}/actuators/{device}/cooling/set", payload: {state: "off", value: "{value}"}}
        """

    /// The scenario of the SIGTERM defect, 20 times: the engine is far behind a QoS 1 stream when SIGTERM
    /// comes. Each time it must exit 0 within 10 s; every command it decided must reach a subscriber; and
    /// with the restart that follows, every reading must have been evaluated exactly once — none lost
    /// because it was acknowledged without being evaluated, none evaluated twice.
    @Test func sigtermStormDeliversEveryDecisionAndLeavesTheRestForRedelivery() async throws {
        let rounds = Int(ProcessInfo.processInfo.environment["SIGTERM_STORM_ROUNDS"] ?? "") ?? 20
        let sensors = 50
        let readingsPerSensor = 40
        let harness = try await EngineHarness("storm", rules: Self.flipRule)
        var observerConfiguration = MQTTConfiguration(broker: harness.broker.url, clientID: "\(harness.prefix)-cmds")
        observerConfiguration.receiveBufferCapacity = 1_000_000
        let observer = try MQTTClient(configuration: observerConfiguration)
        let inbox = MessageInbox(observer)
        let observerTask = Task { try await observer.run() }
        defer { observerTask.cancel() }
        try await withTimeout(.seconds(20), "observer connects") { try await observer.waitUntilConnected() }
        try await observer.subscribe(to: ["\(harness.prefix)/actuators/+/cooling/set"], qos: .atLeastOnce)
        let audit = harness.stateDirectory + "/audit.jsonl"
        let arguments = ["--audit", audit]
        var received: [String: Int] = [:]
        var decided: [String: Int] = [:]
        var shutdownTimes: [Double] = []
        var stoppedEarly = 0
        for round in 0..<rounds {
            let engine = try await harness.startEngine(stateDir: true, extraArguments: arguments)
            let start = AuditCount.size(of: audit)
            // The whole round's readings at QoS 1, pipelined: the engine falls behind the broker.
            var receipts: [MQTTClient.PublishReceipt] = []
            for step in 0..<readingsPerSensor {
                let seq = round * readingsPerSensor + step + 1
                for sensor in 0..<sensors {
                    let value = (seq % 2 == 1 ? 60.0 : 40.0) + Double(seq) / 10_000
                    receipts.append(
                        try harness.publisher.send(
                            Array("{\"seq\": \(seq), \"value\": \(value)}".utf8),
                            to: "\(harness.prefix)/sensors/s\(sensor)/temperature",
                            qos: .atLeastOnce
                        )
                    )
                }
            }
            let total = sensors * readingsPerSensor
            // SIGTERM once a quarter of the round is evaluated.
            try await waitUntil("a quarter of round \(round) evaluated") {
                AuditCount.transitions(in: audit, from: start) >= total / 4
            }
            let signalled = ContinuousClock.now
            engine.signal(SIGTERM)
            let status = await engine.waitForExit(killingAfter: .seconds(30))
            let took = (engine.exitedAt ?? .now) - signalled
            shutdownTimes.append(Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18)
            #expect(status == 0, "round \(round): exit \(status)\n\(engine.standardError.suffix(2000))")
            #expect(took < .seconds(10), "round \(round): SIGTERM took \(took)")
            #expect(!engine.standardError.contains("action not run"), "round \(round)")
            let evaluated = AuditCount.transitions(in: audit, from: start)
            if evaluated < total { stoppedEarly += 1 }
            let summary = engine.standardError.split(separator: "\n").filter {
                $0.contains("shutdown") || $0.contains("error")
            }.joined(separator: "\n")
            print("round \(round): \(evaluated) of \(total) evaluated before SIGTERM ended the engine; \(summary)")
            for receipt in receipts { try await harness.publisher.acknowledgement(of: receipt) }
            // The next start evaluates what the first left unacknowledged, and nothing twice.
            let finisher = try await harness.startEngine(stateDir: true, extraArguments: arguments)
            try await waitUntil("round \(round) fully evaluated") {
                AuditCount.transitions(in: audit, from: start) >= total
            }
            #expect(await harness.stop(finisher) == 0)
            let after = AuditCount(path: audit, from: start)
            #expect(after.transitions == total, "round \(round): each reading evaluated once")
            for (key, count) in after.commands { decided[key, default: 0] += count }
            // Every decided command reaches the subscriber.
            while let missing = decided.first(where: { received[$0.key, default: 0] < $0.value }) {
                do {
                    let message = try await inbox.next(timeout: .seconds(30))
                    received[Self.key(topic: message.topic, payload: message.payloadString), default: 0] += 1
                } catch {
                    Issue.record("round \(round): decided, never received: \(missing.key)")
                    break
                }
            }
        }
        // The scenario must really have stopped engines with a backlog.
        #expect(stoppedEarly >= rounds / 2, "only \(stoppedEarly) of \(rounds) rounds had a backlog at SIGTERM")
        let sorted = shutdownTimes.sorted()
        print("SIGTERM storm: \(rounds) rounds, shutdown median \(sorted[sorted.count / 2]) s, max \(sorted.last!) s")
    }

    @Test(arguments: ["rules-engine", "sensor-sim"])
    func withoutABrokerItSaysSoAndStopsOnSIGTERM(program: String) async throws {
        let url = "mqtt://127.0.0.1:\(try TestBroker.freePort())"
        let arguments =
            program == "rules-engine"
            ? ["run", "--rules", RulesEngineCommandTests.packageRoot + "/rules", "--broker", url]
            : ["run", RulesEngineCommandTests.packageRoot + "/Devices/server-room.yaml", "--broker", url]
        let process = try ChildProcess(builtProductPath(program), arguments)
        try await waitUntil("the warning") {
            process.standardError.contains("warning") && process.standardError.contains("cannot reach the broker")
                && process.standardError.contains("Connection refused")
        }
        await Self.expectCleanExitOnSIGTERM(process)
    }

    /// The broker dies under a connected engine that re-sends a command its actuator did not apply: while
    /// disconnected it re-sends nothing (nothing can be sent), and SIGTERM still ends it within 10 s.
    @Test func afterTheBrokerDiedItResendsNothingAndStopsOnSIGTERM() async throws {
        let harness = try await EngineHarness("gone", rules: Self.flipRule)
        let port = try TestBroker.freePort()
        let engine = try await harness.startEngine(extraArguments: [
            "--resend-interval", "500ms", "--http", "127.0.0.1:\(port)",
        ])
        try await harness.reading("d1", "{\"value\": 60}")
        #expect(try await harness.nextCommand() == "d1/cooling on")
        try await harness.publisher.publish(
            "{\"state\": \"off\"}",
            to: "\(harness.prefix)/actuators/d1/cooling/state",
            qos: .atLeastOnce,
            retain: true
        )
        try await waitUntil("a re-send") { engine.standardError.contains("re-sending a command") }
        harness.broker.kill()
        try await waitUntil("the warning") { engine.standardError.contains("cannot reach the broker") }
        let resends = engine.standardError.components(separatedBy: "re-sending a command").count
        try await waitUntil("a second warning", timeout: .seconds(20)) {
            engine.standardError.components(separatedBy: "cannot reach the broker").count >= 3
        }
        #expect(engine.standardError.components(separatedBy: "re-sending a command").count == resends)
        // /healthz and the live page say so too.
        let health = try ChildProcess(
            "/usr/bin/curl",
            ["-s", "-w", "\n%{http_code}\n", "http://127.0.0.1:\(port)/healthz"]
        )
        #expect(await health.waitForExitAndOutput() == 0)
        #expect(health.output.first?.hasPrefix("not connected to the broker: ") == true, "\(health.output)")
        #expect(health.output.last == "503")
        let page = try ChildProcess("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/"])
        #expect(await page.waitForExitAndOutput() == 0)
        #expect(page.output.joined().contains(#""broker":{"connected":false,"problem":"not connected to the broker"#))
        await Self.expectCleanExitOnSIGTERM(engine)
    }

    /// A browser on the live page keeps `/events` open; SIGTERM ends the stream and the engine.
    @Test func sigtermWithTheLivePageOpenEndsItsEventStream() async throws {
        let harness = try await EngineHarness("sse", rules: Self.flipRule)
        let port = try TestBroker.freePort()
        let engine = try await harness.startEngine(extraArguments: ["--http", "127.0.0.1:\(port)"])
        let browser = try ChildProcess("/usr/bin/curl", ["-sN", "http://127.0.0.1:\(port)/events"])
        try await browser.waitForLine("event: snapshot")
        await Self.expectCleanExitOnSIGTERM(engine)
        #expect(await browser.waitForExit(killingAfter: .seconds(5)) == 0, "the stream ended")
    }

    /// SIGTERM ends `process` with exit 0 within 10 s (the contract), whatever it was doing.
    static func expectCleanExitOnSIGTERM(_ process: ChildProcess) async {
        let signalled = ContinuousClock.now
        process.signal(SIGTERM)
        let status = await process.waitForExit(killingAfter: .seconds(15))
        #expect(status == 0, "exit \(status): \(process.standardError.suffix(2000))")
        let took = (process.exitedAt ?? .now) - signalled
        #expect(took < .seconds(10), "SIGTERM took \(took)")
    }

    static func key(topic: String, payload: String) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any] else {
            return topic + " " + payload
        }
        return "\(topic) \(object["state"] ?? "?") \(object["value"] ?? "?")"
    }

    /// Transitions and commands (by topic, state and value) in the audit file.
    struct AuditCount {
        var transitions = 0

        var commands: [String: Int] = [:]

        static func size(of path: String) -> UInt64 {
            ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? UInt64) ?? 0
        }

        static func text(of path: String, from offset: UInt64) -> String {
            guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
            defer { try? handle.close() }
            try? handle.seek(toOffset: offset)
            return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
        }

        /// Transition lines only, cheaply (polled).
        static func transitions(in path: String, from offset: UInt64) -> Int {
            text(of: path, from: offset).components(separatedBy: "\"event\":\"transition\"").count - 1
        }

        /// The lines from `offset` on.
        init(path: String, from offset: UInt64) {
            let text = Self.text(of: path, from: offset)
            for line in text.split(separator: "\n") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    continue
                }
                if object["event"] as? String == "transition" { transitions += 1 }
                if object["event"] as? String == "command", let topic = object["topic"] as? String,
                    let payload = object["payload"] as? [String: Any]
                {
                    commands["\(topic) \(payload["state"] ?? "?") \(payload["value"] ?? "?")", default: 0] += 1
                }
            }
        }
    }
}

/// Waits until `condition` holds (checked every 20 ms), at most `timeout`.
func waitUntil(
    _ what: String,
    timeout: Duration = .seconds(60),
    _ condition: @escaping @Sendable () -> Bool
) async throws {
    try await withTimeout(timeout, what) {
        while !condition() { try await Task.sleep(for: .milliseconds(20)) }
    }
}
