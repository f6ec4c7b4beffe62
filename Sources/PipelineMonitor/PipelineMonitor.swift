import FileFormats
import Foundation
import MQTT
import Rules

/// What the live terminal view shows: each sensor's latest value, each rule instance's state, each
/// actuator's state and the last commands with their reasons. Fed with MQTT messages, rendered as text.
public struct PipelineMonitor: Sendable {
    struct SensorLine {
        var value: String
        var unit: String
    }

    struct InstanceLine {
        var firing: Bool
        var reason: String
        var at: Int64
    }

    private var sensors: [String: SensorLine] = [:]
    private var instances: [String: InstanceLine] = [:]
    /// Every instance as the engine's `/api/instances` lists it (`--engine`): pending ones and rules that only
    /// log included, with the current value and what holds them. Replaces what transitions tell.
    private var engineInstances: [String]?
    private var actuators: [String: String] = [:]
    private var commands: [String] = []
    /// The engine's last commands (`--engine`), newest first: they replace the ones seen on the broker, which
    /// start empty when the monitor starts.
    private var engineCommands: [String]?
    private var readings = 0
    /// Units by topic from device files (`--devices`), for payloads that name none.
    private let knownUnits: [String: String]

    public init(units: [String: String] = [:]) {
        knownUnits = units
    }

    /// The filters to subscribe to.
    public static let filters = ["sensors/#", "actuators/#", "alerts/#", "pipeline/engine/+/transitions"]

    public mutating func receive(_ message: MQTTMessage, at time: Int64) {
        let levels = message.topic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let json = JSONValue(parsing: message.payload)
        switch levels.first {
        case "sensors" where levels.count >= 3:
            readings += 1
            let key = levels.dropFirst().joined(separator: "/")
            var value = json?["value"] ?? json ?? .string(message.payloadString)
            if case .object(let pairs) = value, let first = pairs.first { value = first.value }
            let unit =
                json?["unit"].map { if case .string(let text) = $0 { text } else { "" } } ?? knownUnits[message.topic]
                ?? ""
            sensors[key] = SensorLine(value: Self.text(value), unit: unit)
        case "actuators" where levels.last == "state":
            let key = levels.dropFirst().dropLast().joined(separator: "/")
            actuators[key] = ActuatorState.name(in: message.payload) ?? message.payloadString
        case "actuators", "alerts":
            let state = ActuatorState.name(in: message.payload) ?? message.payloadString
            let reason = json?["reason"].map(Self.text) ?? ""
            commands.append("\(Self.clock(time))  \(message.topic) \(state)  \(reason)")
            if commands.count > 8 { commands.removeFirst(commands.count - 8) }
        case "pipeline":
            guard let json, case .string(let rule)? = json["rule"] else { return }
            var labels = ""
            if case .object(let pairs)? = json["labels"] {
                labels = pairs.map { "\($0.key)=\(Self.text($0.value))" }.joined(separator: ",")
            }
            instances["\(rule) \(labels)"] = InstanceLine(
                firing: json["transition"] == .string("fire"),
                reason: json["reason"].map(Self.text) ?? "",
                at: time
            )
        default:
            break
        }
    }

    /// The engine's `/api/instances` answer (a JSON array), rendered as one line per instance.
    public mutating func receiveInstances(_ reports: JSONValue, at time: Int64) {
        guard case .array(let items) = reports else { return }
        let order = ["firing": 0, "pending": 1, "inactive": 2]
        engineInstances = items.sorted {
            (order[Self.text($0["state"] ?? .null)] ?? 3, Self.text($0["rule"] ?? .null))
                < (order[Self.text($1["state"] ?? .null)] ?? 3, Self.text($1["rule"] ?? .null))
        }.map { item in
            var labels = ""
            if case .object(let pairs)? = item["labels"] {
                labels = pairs.map { "\($0.key)=\(Self.text($0.value))" }.joined(separator: ",")
            }
            let state = Self.text(item["state"] ?? .null)
            var value = item["last_value"].map(Self.text) ?? "–"
            if case .object? = item["window"], let windowValue = item["window"]?["value"] {
                // As the page says it: an unknown window value is `unknown`, not JSON's null.
                let shown = windowValue == .null ? "unknown" : Self.text(windowValue)
                value = Self.text(item["window"]?["window"] ?? .null) + " = " + shown
            }
            var why = item["last_reason"].flatMap { $0 == .null ? nil : Self.tidy(Self.text($0)) } ?? ""
            if case .string(let held)? = item["held_by"] {
                let until = item["held_until"].flatMap { if case .number(let ms) = $0 { Int64(ms) } else { nil } }
                why =
                    "held by \(held)" + (until.map { " until \(Self.clock($0))" } ?? "")
                    + (why.isEmpty ? "" : "; last: \(why)")
            }
            let shown = ["firing": "FIRING  ", "pending": "pending ", "inactive": "ok      "][state] ?? state.padded(8)
            return "  " + "\(Self.text(item["rule"] ?? .null)) \(labels)".padded(36) + shown + "  "
                + value.padded(14) + "  " + why
        }
    }

    /// The engine's `/api/commands` answer (a JSON array, newest first).
    public mutating func receiveCommands(_ list: JSONValue) {
        guard case .array(let items) = list else { return }
        engineCommands = items.map { item -> String in
            var time: Int64 = 0
            if case .number(let milliseconds)? = item["ts"] { time = Int64(milliseconds) }
            let reason = item["reason"].map { Self.tidy(Self.text($0)) } ?? ""
            let command = "\(Self.text(item["topic"] ?? .null)) \(Self.text(item["state"] ?? .null))"
            return "\(Self.clock(time))  \(command)  \(reason)"
        }
    }

    /// The screen, as lines.
    public func render(broker: String, note: String? = nil) -> [String] {
        var lines = ["sensor-pipeline — \(broker) — \(readings) readings seen — Ctrl-C quits the monitor"]
        if let note { lines.append(note) }
        lines.append("")
        lines.append("SENSORS")
        for (key, line) in sensors.sorted(by: { $0.key < $1.key }) {
            lines.append("  " + key.padded(36) + line.value.padded(10, left: true) + " " + line.unit)
        }
        if let engineInstances {
            lines += ["", "RULE INSTANCES (from the engine: state, current value, why)"]
            lines += engineInstances
        } else {
            lines += ["", "RULE INSTANCES (after their first transition; --engine HOST:PORT shows them all)"]
            for (key, line) in instances.sorted(by: { $0.key < $1.key }) {
                lines.append("  " + key.padded(36) + (line.firing ? "FIRING  " : "inactive") + "  " + line.reason)
            }
        }
        lines += ["", "ACTUATORS"]
        for (key, state) in actuators.sorted(by: { $0.key < $1.key }) {
            lines.append("  " + key.padded(36) + state)
        }
        lines += ["", "LAST COMMANDS"]
        lines += (engineCommands.map { Array($0.prefix(8)) } ?? commands.reversed()).map { "  " + $0 }
        return lines
    }

    /// A reason with its full-precision numbers (an average's 30.711818181818174) to two decimals.
    static func tidy(_ reason: String) -> String {
        reason.replacing(/-?\d+\.\d{3,}/) { match in
            JSONValue.format(((Double(match.output) ?? 0) * 100).rounded() / 100)
        }
    }

    static func text(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): text
        case .number(let number): JSONValue.format((number * 100).rounded() / 100)
        default: value.jsonText
        }
    }

    static func clock(_ time: Int64) -> String {
        let seconds = (time / 1000) % 86_400
        return String(format: "%02d:%02d:%02d", seconds / 3600, (seconds / 60) % 60, seconds % 60)
    }
}

extension String {
    fileprivate func padded(_ width: Int, left: Bool = false) -> String {
        guard count < width else { return self + " " }
        let padding = String(repeating: " ", count: width - count)
        return left ? padding + self : self + padding
    }
}
