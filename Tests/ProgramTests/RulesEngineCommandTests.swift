import Foundation
import MQTTTestSupport
import Testing

/// Runs the real `rules-engine` executable, as users and scripts do.
@Suite("rules-engine offline commands")
struct RulesEngineCommandTests {
    struct Run {
        var status: Int32
        var standardOutput: String
        var standardError: String
    }

    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    func rulesEngine(_ arguments: [String]) throws -> Run {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("rules-engine")
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: Self.packageRoot)
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(
            status: process.terminationStatus,
            standardOutput: String(decoding: outputData, as: UTF8.self),
            standardError: String(decoding: errorData, as: UTF8.self)
        )
    }

    func temporaryDirectory(_ files: [String: String]) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rules-\(UUID().uuidString)").path
        for (name, text) in files {
            let path = directory + "/" + name
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true
            )
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        return directory
    }

    /// The shipped rules are clean: valid, and no warning (their windows state `max_samples`).
    @Test func checkAcceptsTheShippedRules() throws {
        let run = try rulesEngine(["check", "rules"])
        #expect(run.status == 0, "\(run.standardError)")
        #expect(!run.standardError.contains("warning:"), "\(run.standardError)")
    }

    /// `test` takes a folder as `check` does (its `*.test.yaml` files), and names a path it cannot use.
    @Test func testTakesAFolderAndNamesWhatItCannotRead() throws {
        let folder = try rulesEngine(["test", "rules"])
        #expect(folder.status == 0, "\(folder.standardError)")
        #expect(folder.standardOutput.contains("PASS  rules/server-room.test.yaml: "), "\(folder.standardOutput)")
        #expect(folder.standardOutput.hasSuffix(" passed, 0 failed\n"), "\(folder.standardOutput)")
        let missing = try rulesEngine(["test", "rules/nothing.test.yaml"])
        #expect(missing.status == 1)
        #expect(
            missing.standardError == "rules/nothing.test.yaml: no such file or directory\n",
            "\(missing.standardError)"
        )
        let empty = try rulesEngine(["test", "Devices"])
        #expect(empty.standardError == "Devices: no rule test files (*.test.yaml) in it\n", "\(empty.standardError)")
    }

    @Test(arguments: ["rules-engine", "sensor-sim", "pipeline-monitor"])
    func everyProgramPrintsItsVersion(program: String) async throws {
        let run = try ChildProcess(builtProductPath(program), ["--version"])
        #expect(await run.waitForExitAndOutput() == 0)
        #expect(run.output.count == 1 && run.output[0].wholeMatch(of: /\d+\.\d+\.\d+/) != nil, "\(run.output)")
    }

    /// A duration window that does not state `max_samples` is accepted with a warning at its line.
    @Test func checkWarnsAboutADurationWindowWithoutMaxSamples() throws {
        let directory = try temporaryDirectory([
            "a.yaml": "rules:\n  - id: hot\n    topic: s/{d}/t\n    avg: 5m\n    above: 30\n"
        ])
        let run = try rulesEngine(["check", directory])
        #expect(run.status == 0)
        let lines = run.standardError.split(separator: "\n")
        #expect(lines.count == 2 && lines.last == "1 rule(s) valid", "\(run.standardError)")
        #expect(
            lines.first?.hasPrefix("\(directory)/a.yaml:2:5: warning: rule 'hot': the window 'avg 5m' keeps") == true,
            "\(run.standardError)"
        )
    }

    @Test func checkReportsEveryProblemAsFileLineColumn() throws {
        let directory = try temporaryDirectory([
            "a.yaml": "rules:\n  - id: x\n    topic: s/{d}/t\n    above: 30\n    cooldwn: 1m\n",
            "nested/b.yml": "rules:\n  - id: x\n    topic: s/#/t\n    below: 1\n",
            "nested/ignored.txt": "not yaml",
        ])
        let run = try rulesEngine(["check", directory])
        #expect(run.status == 1)
        let lines = run.standardError.split(separator: "\n").map(String.init)
        #expect(
            lines == [
                "\(directory)/a.yaml:5:5: error: unknown key 'cooldwn' in a rule (did you mean 'cooldown'?)",
                "\(directory)/nested/b.yml:2:5: error: duplicate rule id 'x' (first defined at \(directory)/a.yaml:2:5)",
                "\(directory)/nested/b.yml:3:12: error: invalid topic: '#' must be the last level of topic 's/#/t'",
            ]
        )
    }

    @Test func replayPrintsOneJSONLinePerAction() throws {
        let directory = try temporaryDirectory([
            "readings.jsonl": """
            {"ts": 1000, "topic": "sensors/rack-1/temperature", "payload": {"value": 31, "unit": "°C"}}
            {"ts": "1970-01-01T00:00:06Z", "topic": "sensors/rack-1/temperature", "payload": {"value": 32}}
            {"ts": 12000, "topic": "sensors/rack-1/temperature", "payload": 33}
            """
        ])
        let run = try rulesEngine(["replay", "--rules", "rules", directory + "/readings.jsonl"])
        #expect(run.status == 0, "\(run.standardError)")
        #expect(
            run.standardOutput == #"""
                {"ts":6000,"rule":"rack-cooling","transition":"fire","topic":"actuators/rack-1/cooling/set","payload":{"state":"on","rule":"rack-cooling","reason":"avg 1m = 31.5 above 30 for 5s","value":31.5,"ts":6000}}

                """#
        )
        let again = try rulesEngine(["replay", "--rules", "rules", directory + "/readings.jsonl"])
        #expect(again.standardOutput == run.standardOutput)
    }

    /// A chain: rule A publishes an event, rule B counts the events. `replay` feeds A's publish to B at its own
    /// time, as the broker does live (it used to print A's actions only).
    @Test func replayFeedsAChainOfRules() throws {
        let directory = try temporaryDirectory([
            "rules/chain.yaml": """
            rules:
              - id: hot
                topic: sensors/{room}/temperature
                above: 30
                on_fire:
                  - publish: {topic: "events/{room}/hot", payload: {value: 1}}
              - id: often-hot
                topic: events/{room}/hot
                count: 1h
                above: 1
                on_fire:
                  - log: "{room} hot {value} times"
            """,
            "readings.jsonl": """
            {"ts": 0, "topic": "sensors/a/temperature", "payload": 31}
            {"ts": 1000, "topic": "sensors/a/temperature", "payload": 20}
            {"ts": 2000, "topic": "sensors/a/temperature", "payload": 32}
            """,
        ])
        let run = try rulesEngine(["replay", "--rules", directory + "/rules", directory + "/readings.jsonl"])
        #expect(run.status == 0, "\(run.standardError)")
        #expect(
            run.standardOutput.contains(#"{"ts":2000,"rule":"often-hot","transition":"fire","log":"a hot 2 times"}"#),
            "\(run.standardOutput)"
        )
    }

    /// A test file with a misspelled key: every problem, with "did you mean", under its FAIL line on stdout (it
    /// used to say only "could not run" there, the reason on stderr).
    @Test func aBrokenTestFileSaysWhyWithItsVerdict() throws {
        let directory = try temporaryDirectory([
            "t.test.yaml": """
            rule_files: [\(Self.packageRoot)/rules/cold-chain.yaml]
            tests:
              - name: x
                readings:
                  - {at: 0s, topik: sensors/freezer-1/door, payload: {value: open}}
                expectt:
            """
        ])
        let run = try rulesEngine(["test", directory + "/t.test.yaml"])
        #expect(run.status == 1)
        #expect(
            run.standardOutput.contains(
                """
                FAIL  \(directory)/t.test.yaml: could not run
                      \(directory)/t.test.yaml:5:18: error: unknown key 'topik' in a reading (did you mean 'topic'?)
                """
            ),
            "\(run.standardOutput)"
        )
        #expect(
            run.standardOutput.contains(
                "\(directory)/t.test.yaml:6:5: error: unknown key 'expectt' in a test (did you mean 'expect'?)"
            )
        )
    }

    /// Times as `mosquitto_sub -F %J` writes them (six fraction digits) and with an offset: `replay` used to
    /// die with SIGILL on them.
    @Test func replayTakesMicrosecondAndOffsetTimes() throws {
        let directory = try temporaryDirectory([
            "readings.jsonl": """
            {"ts": "1970-01-01T00:00:01.000117Z", "topic": "sensors/rack-1/temperature", "payload": {"value": 31}}
            {"ts": "1970-01-01T01:00:06.000999999+01:00", "topic": "sensors/rack-1/temperature", "payload": {"value": 32}}
            {"ts": "1970-01-01T00:00:12.5Z", "topic": "sensors/rack-1/temperature", "payload": 33}
            {"ts": "1970-01-01T00:00:13.1234567890Z", "topic": "sensors/rack-1/temperature", "payload": 33}
            """
        ])
        let run = try rulesEngine(["replay", "--rules", "rules", directory + "/readings.jsonl"])
        #expect(run.status == 2)
        #expect(
            run.standardError.contains(
                "\(directory)/readings.jsonl:4:1: error: \"ts\" '1970-01-01T00:00:13.1234567890Z' is not RFC 3339"
            ),
            "\(run.standardError)"
        )
        let lines = try String(contentsOfFile: directory + "/readings.jsonl", encoding: .utf8).split(separator: "\n")
        try lines.prefix(3).joined(separator: "\n").write(
            toFile: directory + "/readings.jsonl",
            atomically: true,
            encoding: .utf8
        )
        let good = try rulesEngine(["replay", "--rules", "rules", directory + "/readings.jsonl"])
        #expect(good.status == 0, "\(good.standardError)")
        #expect(
            good.standardOutput.contains(#"{"ts":6000,"rule":"rack-cooling","transition":"fire""#),
            "\(good.standardOutput)"
        )
    }

    /// `{reason}` fills a log message, a command argument and a payload string with the transition's reason.
    @Test func reasonIsAPlaceholderOutsideTopics() throws {
        let directory = try temporaryDirectory([
            "rules/hot.yaml": """
            rules:
              - id: hot
                topic: sensors/{room}/temperature
                above: 30
                for: 2s
                on_fire:
                  - log: "{room} is hot: {reason}"
                  - publish: {topic: "alerts/{room}", payload: {text: "because {reason}"}}
            """,
            "readings.jsonl": """
            {"ts": 1000, "topic": "sensors/lab/temperature", "payload": 31}
            {"ts": 3000, "topic": "sensors/lab/temperature", "payload": 32}
            """,
        ])
        let run = try rulesEngine(["replay", "--rules", directory + "/rules", directory + "/readings.jsonl"])
        #expect(run.status == 0, "\(run.standardError)")
        #expect(run.standardOutput.contains(#""log":"lab is hot: value 32 above 30 for 2s""#), "\(run.standardOutput)")
        #expect(run.standardOutput.contains(#""text":"because value 32 above 30 for 2s""#), "\(run.standardOutput)")
        let inTopic = try temporaryDirectory([
            "hot.yaml":
                "rules:\n  - id: hot\n    topic: s/{room}/t\n    above: 30\n    on_fire: [{publish: {topic: \"a/{reason}\"}}]\n"
        ])
        let check = try rulesEngine(["check", inTopic])
        #expect(check.status == 1)
        #expect(
            check.standardError.contains("placeholder {reason} is not captured by the rule's topic"),
            "\(check.standardError)"
        )
    }

    @Test func diffShowsMovedAddedAndRemovedActionsAndExitsOne() throws {
        let rule = { (threshold: Int, duration: String) in
            """
            rules:
              - id: hot
                topic: sensors/{room}/temperature
                above: \(threshold)
                for: \(duration)
                on_fire:
                  - publish: {topic: "actuators/{room}/fan/set", payload: {state: "on"}}
            """
        }
        let directory = try temporaryDirectory([
            "old/rules.yaml": rule(30, "10s"),
            "new/rules.yaml": rule(30, "20s"),
            "same/rules.yaml": rule(30, "10s"),
            "readings.jsonl": """
            {"ts": 0, "topic": "sensors/lab/temperature", "payload": 31}
            {"ts": 60000, "topic": "sensors/lab/temperature", "payload": 31}
            """,
        ])
        let changed = try rulesEngine([
            "diff", "--old", directory + "/old", "--new", directory + "/new", directory + "/readings.jsonl",
        ])
        #expect(changed.status == 1)
        #expect(changed.standardOutput.contains("~ hot fire room=lab moved from ts 10000 to ts 20000 (+10000 ms)"))
        let unchanged = try rulesEngine([
            "diff", "--old", directory + "/old", "--new", directory + "/same", directory + "/readings.jsonl",
        ])
        #expect(unchanged.status == 0)
        #expect(unchanged.standardOutput.isEmpty)
    }

    @Test func testRunsTheShippedTestFiles() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.packageRoot + "/rules")
            .filter { $0.hasSuffix(".test.yaml") }.sorted().map { "rules/" + $0 }
        #expect(files.count >= 3)
        let run = try rulesEngine(["test"] + files)
        #expect(run.status == 0, "\(run.standardOutput)")
        #expect(run.standardOutput.contains(" passed, 0 failed"))
    }

    @Test func aFailingTestShowsExpectedAndActualSideBySide() throws {
        let directory = try temporaryDirectory([
            "rules.yaml": "rules:\n  - id: hot\n    topic: s/{room}/t\n    above: 30\n    for: 5s\n",
            "hot.test.yaml": """
            rule_files: [rules.yaml]
            tests:
              - name: fires too early
                readings:
                  - {at: 0s, topic: s/lab/t, payload: 31}
                until: 10s
                expect:
                  - {at: 1s, rule: hot, transition: fire}
            """,
        ])
        let run = try rulesEngine(["test", directory + "/hot.test.yaml"])
        #expect(run.status == 1)
        #expect(run.standardOutput.contains("FAIL"))
        #expect(run.standardOutput.contains("1s fire hot"))
        #expect(run.standardOutput.contains("5s fire hot room=lab"))
        #expect(run.standardOutput.contains("0 passed, 1 failed"))
    }
}

/// `diff` and `replay` and the timers still pending after the last reading.
@Suite("rules-engine diff and replay, --end")
struct RulesEngineEndTests {
    static func rule(for duration: String) -> String {
        """
        rules:
          - id: hot
            topic: "sensors/{room}/temperature"
            above: 30
            for: \(duration)
            on_fire:
              - publish: {topic: "actuators/{room}/fan/set", payload: {state: "on"}}
        """
    }

    func files() throws -> String {
        try RulesEngineCommandTests().temporaryDirectory([
            "old/rules.yaml": Self.rule(for: "1m"),
            "new/rules.yaml": Self.rule(for: "2m"),
            "readings.jsonl": """
            {"ts": 0, "topic": "sensors/lab/temperature", "payload": 31}
            {"ts": 90000, "topic": "sensors/lab/temperature", "payload": 31}
            """,
        ])
    }

    /// A longer `for` whose fire is due after the last reading is a move with `--end`, not a removal.
    @Test func diffWithEndShowsALongerForAsMoved() throws {
        let directory = try files()
        let run = try RulesEngineCommandTests().rulesEngine([
            "diff", "--old", directory + "/old", "--new", directory + "/new", "--end", "300000",
            directory + "/readings.jsonl",
        ])
        #expect(run.status == 1)
        #expect(
            run.standardOutput.hasPrefix("~ hot fire room=lab moved from ts 60000 to ts 120000"),
            "\(run.standardOutput)"
        )
    }

    /// Without `--end` the clock stops at the last reading, and both commands say what they did not run.
    @Test func withoutEndPendingTimersAreReported() throws {
        let directory = try files()
        let diff = try RulesEngineCommandTests().rulesEngine([
            "diff", "--old", directory + "/old", "--new", directory + "/new", directory + "/readings.jsonl",
        ])
        #expect(
            diff.standardError.contains("1 timer(s) pending after the last reading in the new rules were not run"),
            "\(diff.standardError)"
        )
        let replay = try RulesEngineCommandTests().rulesEngine([
            "replay", "--rules", directory + "/new", directory + "/readings.jsonl",
        ])
        #expect(replay.status == 0)
        #expect(
            replay.standardError.contains(
                "1 timer(s) pending after the last reading were not run (the next at 120000); pass --end"
            ),
            "\(replay.standardError)"
        )
    }
}
