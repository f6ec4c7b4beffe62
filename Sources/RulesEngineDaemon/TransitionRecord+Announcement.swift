import FileFormats
import Rules

extension TransitionRecord {
    /// The transition as the engine announces it on `pipeline/engine/<client-id>/transitions`:
    /// `{"ts":…,"rule":…,"transition":…,"labels":{…},"value":…,"reason":…}`, written straight into one buffer.
    var announcementBytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128 + reason.utf8.count)
        bytes.append(contentsOf: #"{"ts":"#.utf8)
        bytes.append(contentsOf: String(timestamp).utf8)
        bytes.append(contentsOf: #","rule":"#.utf8)
        JSONValue.writeEscaped(ruleID, to: &bytes)
        bytes.append(contentsOf: #","transition":""#.utf8)
        bytes.append(contentsOf: transition.rawValue.utf8)
        bytes.append(contentsOf: #"","labels":{"#.utf8)
        for (index, label) in labels.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            JSONValue.writeEscaped(label.name, to: &bytes)
            bytes.append(UInt8(ascii: ":"))
            JSONValue.writeEscaped(label.value, to: &bytes)
        }
        bytes.append(contentsOf: #"},"value":"#.utf8)
        (value ?? .null).write(to: &bytes)
        bytes.append(contentsOf: #","reason":"#.utf8)
        JSONValue.writeEscaped(reason, to: &bytes)
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }
}
