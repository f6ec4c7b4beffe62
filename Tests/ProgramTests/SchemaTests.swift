import Foundation
import MQTTTestSupport
import Testing
import Yams

/// `rules-engine schema rules|devices`, checked with a real JSON Schema validator (Debian's python3-jsonschema,
/// draft 2020-12) on what an editor sees: YAML read as YAML 1.2, as editors read it.
@Suite("rules-engine schema")
struct SchemaTests {
    static let root = RulesEngineCommandTests.packageRoot

    /// Rule files that use every key somewhere (with the shipped ones).
    static let everyRuleKey = [
        """
        rules:
          - id: full
            description: every key of a rule
            all:
              - {topic: "a/{x}/t", field: data.temp, avg: 5m, above: 30, clear: 28, max_samples: 500, name: t}
              - {topic: "a/{x}/t", rate: {per: 1m, over: 5m}, above: 2}
              - {topic: "a/{x}/door", at_least: 3 in 10m, equals: open}
              - {topic: "a/{x}/lid", times: 11 in 1h, equals: open}
              - {topic: "a/{x}/h", at_least: 2 of 4, below: 10, stale: 5m}
              - any:
                  - {topic: "a/{x}/p", delta: 10m, outside: [-1, 1]}
                  - not: {topic: "a/{x}/n", count: 1m, below: 1}
                  - {topic: "a/{x}/q", min: 3, between: [0, 5]}
                  - {topic: "a/{x}/r", max: 1h, above: 9}
                  - {topic: "a/{x}/s", sum: 10, below: 100}
            for: 30s
            cooldown: 1m
            min_on: 15s
            min_off: 0
            max_transitions: 6 per 1h
            keep_firing_for: 2m
            active: {days: [mon, Fri], from: "22:00", to: 06:00, timezone: UTC}
            outside_active: hold
            flapping: {history: 10, low: 15, high: 40, state: clear}
            severity: critical
            on_unknown: clear
            on_fire:
              - publish: {topic: "alerts/{x}", payload: {state: "on", v: "{value}", why: "{reason}", n: 1}, qos: 2, retain: true}
              - log: "{x} {t}"
              - log: {message: "again {rule}"}
              - command: [echo, "{x}"]
              - command: {run: [echo, "{severity}"], timeout: 5s}
            on_clear: []
          - id: 42
            topic: "b/{y}/t"
            equals: true
            max_transitions: 3
          - id: grouped
            topic: "c/{tank}/{probe}/level"
            below: 10
            group_by: tank
            match: at_least 2
        """,
        "rules: []\n",
    ]

    /// One unknown key at each level of a rule file; check rejects each, and so must the schema.
    static let unknownRuleKeys = [
        "rules:\n  - {id: a, topic: s/t, above: 1, cooldwn: 1m}\n",
        "rules:\n  - {id: a, all: [{topic: s/t, above: 1, colour: red}]}\n",
        "rules:\n  - {id: a, not: {any: [{topic: s/t, above: 1}], extra: 1}}\n",
        "rules:\n  - {id: a, topic: s/t, above: 1, on_fire: [{publish: {topic: x, qoss: 1}}]}\n",
        "rules:\n  - {id: a, topic: s/t, above: 1, on_fire: [{email: someone}]}\n",
        "rules:\n  - {id: a, topic: s/t, above: 1, on_fire: [{log: {message: m, level: info}}]}\n",
        "rules:\n  - {id: a, topic: s/t, above: 1, on_fire: [{command: {run: [x], shell: true}}]}\n",
        "rules:\n  - {id: a, topic: s/t, above: 1, active: {from: \"08:00\", to: \"09:00\", tz: UTC}}\n",
        "rules:\n  - {id: a, topic: s/t, above: 1, flapping: {history: 10, window: 5m}}\n",
        "rules:\n  - {id: a, topic: s/t, rate: {per: 1m, over: 5m, anchored: true}, above: 1}\n",
        "rules:\n  - {id: a, topic: s/t, above: 1}\nextra: 1\n",
    ]

    static let unknownDeviceKeys = [
        "devices:\n  - {id: d, colour: red, sensors: [{name: t, signal: {model: constant, value: 1}}]}\n",
        "devices:\n  - {id: d, sensors: [{name: t, every: 5s, signal: {model: constant, value: 1}}]}\n",
        "devices:\n  - {id: d, sensors: [{name: t, signal: {model: constant, value: 1, jitter: 2}}]}\n",
        "devices:\n  - {id: d, actuators: [{name: fan, speed: 3}]}\n",
        "devices:\n  - {id: d, sensors: [{name: t, signal: {model: constant, value: 1}, spikes: {often: 1}}]}\n",
    ]

    @Test(arguments: ["rules", "tests", "devices"])
    func theCommittedSchemaIsWhatTheCommandPrints(kind: String) async throws {
        let run = try ChildProcess(builtProductPath("rules-engine"), ["schema", kind])
        #expect(await run.waitForExitAndOutput() == 0)
        let committed = try String(contentsOfFile: "\(Self.root)/docs/schema/\(kind).schema.json", encoding: .utf8)
        #expect(
            run.output.joined(separator: "\n") + "\n" == committed,
            "docs/schema/\(kind).schema.json is stale: run `rules-engine schema \(kind) > docs/schema/\(kind).schema.json`"
        )
    }

    @Test func everyRuleFileCheckAcceptsValidatesAndEveryUnknownKeyFails() async throws {
        let shipped = try Self.files(in: "rules").filter { !$0.hasSuffix(".test.yaml") }
        let accepted = try shipped.map { try String(contentsOfFile: $0, encoding: .utf8) } + Self.everyRuleKey
        for text in accepted + Self.unknownRuleKeys {
            let directory = try TestBroker.makeDirectory()
            try text.write(toFile: directory + "/r.yaml", atomically: true, encoding: .utf8)
            let check = try ChildProcess(builtProductPath("rules-engine"), ["check", directory])
            let expected: Int32 = Self.unknownRuleKeys.contains(text) ? 1 : 0
            #expect(await check.waitForExitAndOutput() == expected, "\(text)\n\(check.standardError)")
        }
        let complaints = try await Self.validate(accepted + Self.unknownRuleKeys, against: "rules")
        for (index, text) in accepted.enumerated() {
            #expect(complaints[index].isEmpty, "\(text)\n\(complaints[index])")
        }
        for (index, text) in Self.unknownRuleKeys.enumerated() {
            #expect(!complaints[accepted.count + index].isEmpty, "the schema accepts an unknown key:\n\(text)")
        }
    }

    @Test func everyShippedDeviceFileValidatesAndEveryUnknownKeyFails() async throws {
        let shipped =
            try Self.files(in: "Devices").map { try String(contentsOfFile: $0, encoding: .utf8) } + [
                // Shared definitions: `x-` keys and `<<` (an editor's YAML 1.2 keeps `<<` as a key, so the required
                // keys are written out here).
                "x-t: &t {unit: C}\ndevices:\n  - {id: d, x-n: 1, sensors: [{<<: *t, name: t, signal: {model: constant, value: 1}}]}\n"
            ]
        let complaints = try await Self.validate(shipped + Self.unknownDeviceKeys, against: "devices")
        for (index, text) in shipped.enumerated() {
            #expect(complaints[index].isEmpty, "\(text)\n\(complaints[index])")
        }
        for (index, text) in Self.unknownDeviceKeys.enumerated() {
            #expect(!complaints[shipped.count + index].isEmpty, "the schema accepts an unknown key:\n\(text)")
        }
    }

    /// Rule test files: the shipped ones validate, and a misspelled key at each level fails, as `test` says.
    @Test func everyShippedTestFileValidatesAndEveryUnknownKeyFails() async throws {
        let shipped = try Self.files(in: "rules").filter { $0.hasSuffix(".test.yaml") }
            .map { try String(contentsOfFile: $0, encoding: .utf8) }
        let unknown = [
            "rule_files: [r.yaml]\ntests: []\nrule_file: x\n",
            "rule_files: [r.yaml]\ntests:\n  - {name: t, readings: [], expectt: []}\n",
            "rule_files: [r.yaml]\ntests:\n  - {name: t, readings: [{at: 0s, topik: a, payload: 1}]}\n",
            "rule_files: [r.yaml]\ntests:\n  - {name: t, readings: [], expect: [{at: 0s, rule: r, transition: fire, lable: {}}]}\n",
        ]
        let complaints = try await Self.validate(shipped + unknown, against: "tests")
        for (index, text) in shipped.enumerated() {
            #expect(complaints[index].isEmpty, "\(text)\n\(complaints[index])")
        }
        for (index, text) in unknown.enumerated() {
            #expect(!complaints[shipped.count + index].isEmpty, "the schema accepts an unknown key:\n\(text)")
        }
    }

    /// The shipped files point editors at the committed schemas.
    @Test func shippedFilesNameTheirSchema() throws {
        for (folder, kind) in [("rules", "rules"), ("Devices", "devices")] {
            for file in try Self.files(in: folder) {
                let first = try String(contentsOfFile: file, encoding: .utf8).prefix { $0 != "\n" }
                let schema = file.hasSuffix(".test.yaml") ? "tests" : kind
                #expect(first == "# yaml-language-server: $schema=../docs/schema/\(schema).schema.json", "\(file)")
            }
        }
    }

    static func files(in folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: "\(root)/\(folder)").filter { $0.hasSuffix(".yaml") }
            .sorted().map { "\(root)/\(folder)/\($0)" }
    }

    /// What the validator says of each document (empty when it validates), in order.
    static func validate(_ documents: [String], against kind: String) async throws -> [String] {
        let directory = try TestBroker.makeDirectory()
        let instances = JSONValueText.array(try documents.map { try YAML12.json(of: $0) })
        try instances.write(toFile: directory + "/documents.json", atomically: true, encoding: .utf8)
        let script = """
            import json, sys, jsonschema
            schema = json.load(open(sys.argv[1]))
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema)
            for document in json.load(open(sys.argv[2])):
                print(json.dumps("; ".join(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document))))
            """
        let python = try ChildProcess(
            "/usr/bin/python3",
            ["-c", script, "\(root)/docs/schema/\(kind).schema.json", directory + "/documents.json"]
        )
        let status = await python.waitForExitAndOutput()
        guard status == 0, python.output.count == documents.count else {
            throw TestBrokerError("the validator failed (\(status)): \(python.standardError)")
        }
        return try python.output.map { try JSONDecoder().decode(String.self, from: Data($0.utf8)) }
    }
}

/// YAML as an editor reads it (YAML 1.2 core schema): `on`, `yes` and `05:00` are strings; only true/false,
/// numbers and null are not.
enum YAML12 {
    static func json(of text: String) throws -> String {
        guard let node = try Yams.compose(yaml: text) else { return "null" }
        return json(node)
    }

    static func json(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar):
            if scalar.style != .plain { return JSONValueText.string(scalar.string) }
            let text = scalar.string
            if ["", "~", "null", "Null", "NULL"].contains(text) { return "null" }
            if ["true", "True", "TRUE"].contains(text) { return "true" }
            if ["false", "False", "FALSE"].contains(text) { return "false" }
            if text.wholeMatch(of: /[-+]?[0-9]+/) != nil { return String(Int(text) ?? 0) }
            if text.wholeMatch(of: /[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?/) != nil,
                let value = Double(text)
            {
                return "\(value)"
            }
            return JSONValueText.string(text)
        case .sequence(let sequence):
            return "[" + sequence.map(json).joined(separator: ",") + "]"
        case .mapping(let mapping):
            return "{"
                + mapping.map { "\(JSONValueText.string($0.key.string ?? "")):\(json($0.value))" }
                .joined(separator: ",") + "}"
        case .alias:
            return "null"
        }
    }
}

extension JSONValueText {
    static func string(_ text: String) -> String {
        String(decoding: try! JSONEncoder().encode(text), as: UTF8.self)
    }

    static func array(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }
}
