import FileFormats
import Rules

extension TransitionRecord {
    /// The transition as the engine announces it on `pipeline/engine/<client-id>/transitions`:
    /// `{"ts":…,"rule":…,"transition":…,"labels":{…},"value":…,"reason":…}`, written straight into one string.
    var announcementText: String {
        var text = "{\"ts\":"
        text.reserveCapacity(128 + reason.utf8.count)
        text += String(timestamp)
        text += ",\"rule\":"
        JSONValue.writeEscaped(ruleID, to: &text)
        text += ",\"transition\":\""
        text += transition.rawValue
        text += "\",\"labels\":{"
        for (index, label) in labels.enumerated() {
            if index > 0 { text += "," }
            JSONValue.writeEscaped(label.name, to: &text)
            text += ":"
            JSONValue.writeEscaped(label.value, to: &text)
        }
        text += "},\"value\":"
        (value ?? .null).write(to: &text)
        text += ",\"reason\":"
        JSONValue.writeEscaped(reason, to: &text)
        text += "}"
        return text
    }
}
