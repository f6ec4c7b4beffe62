import FileFormats
import Yams

// A rule's actions (publish, log, webhook, command) and the placeholders their templates may use.
extension RuleLoader {
    static func parseActions(
        _ node: Node,
        what: String,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> [Action] {
        guard let items = reader.sequence(node, what: "'\(what)'") else { return [] }
        var actions: [Action] = []
        for item in items {
            guard
                let entries = reader.mapping(
                    item,
                    what: "an action in '\(what)'",
                    allowed: actionKeys
                )
            else { continue }
            let handlers = actionKeys.filter { entries[$0] != nil }
            guard !handlers.isEmpty else {
                reader.error(item, "an action needs a handler: one of publish, log, command, webhook")
                continue
            }
            let location = reader.location(item)
            let before = reader.diagnostics.count
            if handlers.count > 1 {
                reader.error(
                    item,
                    "an action has one handler; split '\(handlers.joined(separator: "' and '"))' into two actions"
                )
            }
            // Every handler is checked, so that one mistake does not hide the others.
            var handler: Action.Handler?
            for handlerName in handlers {
                guard let handlerEntry = entries[handlerName] else { continue }
                switch handlerName {
                case "publish":
                    handler = parsePublish(handlerEntry.value, captures: captures, names: names, reader: &reader)
                case "log": handler = parseLog(handlerEntry.value, captures: captures, names: names, reader: &reader)
                case "webhook":
                    handler = parseWebhook(handlerEntry.value, captures: captures, names: names, reader: &reader)
                default:
                    handler = parseCommand(handlerEntry.value, captures: captures, names: names, reader: &reader)
                }
            }
            if let handler, reader.diagnostics.count == before {
                actions.append(Action(handler: handler, location: location))
            }
        }
        return actions
    }

    static func parsePublish(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> Action.Handler? {
        guard
            let entries = reader.mapping(
                node,
                what: "a publish action",
                allowed: ["topic", "payload", "qos", "retain"]
            )
        else { return nil }
        guard let topicEntry = entries["topic"] else {
            reader.error(node, "a publish action needs a 'topic'")
            return nil
        }
        guard let topicText = reader.string(topicEntry.value, what: "the action's topic") else { return nil }
        let topic = Template(topicText)
        let literal = topic.literalText
        if topicText.isEmpty || literal.contains("+") || literal.contains("#")
            || literal.unicodeScalars.contains(where: { $0.value < 0x20 })
        {
            reader.error(
                topicEntry.value,
                "action topic '\(topicText)' must be a plain topic: no '+', '#' or control characters"
            )
        }
        checkPlaceholders(
            topic,
            at: topicEntry.value,
            allowed: names + topicPlaceholders,
            captures: captures,
            reader: &reader
        )
        var payload: PayloadTemplate?
        if let payloadEntry = entries["payload"] {
            payload = payloadTemplate(payloadEntry.value, captures: captures, names: names, reader: &reader)
        }
        var qos = 1
        if let entry = entries["qos"], let value = reader.integer(entry.value, what: "'qos'") {
            if value > 2 { reader.error(entry.value, "'qos' must be 0, 1 or 2") }
            qos = value
        }
        let retain = entries["retain"].flatMap { reader.bool($0.value, what: "'retain'") } ?? false
        return .publish(topic: topic, payload: payload, qos: qos, retain: retain)
    }

    static func parseLog(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> Action.Handler? {
        var messageNode = node
        if case .mapping = node {
            guard let entries = reader.mapping(node, what: "a log action", allowed: ["message"]),
                let entry = entries["message"]
            else {
                reader.error(node, "a log action needs a 'message'")
                return nil
            }
            messageNode = entry.value
        }
        guard let text = reader.string(messageNode, what: "a log message") else { return nil }
        let template = Template(text)
        checkPlaceholders(
            template,
            at: messageNode,
            allowed: names + actionPlaceholders,
            captures: captures,
            reader: &reader
        )
        return .log(message: template)
    }

    /// `webhook: {url, body, timeout}`: the URL (placeholders filled, percent-encoded) gets the body as JSON.
    static func parseWebhook(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> Action.Handler? {
        guard let entries = reader.mapping(node, what: "a webhook action", allowed: ["url", "body", "timeout"]) else {
            return nil
        }
        guard let urlEntry = entries["url"] else {
            reader.error(node, "a webhook action needs a 'url' (https://host/path)")
            return nil
        }
        guard let text = reader.string(urlEntry.value, what: "the webhook's url") else { return nil }
        let url = Template(text)
        let lowered = text.lowercased()
        if !(lowered.hasPrefix("https://") || lowered.hasPrefix("http://")) || text.count <= "https://".count
            || url.literalText.unicodeScalars.contains(where: { $0.value <= 0x20 })
        {
            reader.error(urlEntry.value, "webhook url '\(text)' must be an http:// or https:// URL without spaces")
        } else if text.drop(while: { $0 != "/" }).dropFirst(2).prefix(while: { $0 != "/" }).contains("{") {
            reader.error(urlEntry.value, "webhook url '\(text)': placeholders go in the path or query, not the host")
        }
        checkPlaceholders(
            url,
            at: urlEntry.value,
            allowed: names + actionPlaceholders,
            captures: captures,
            reader: &reader
        )
        let body = entries["body"].flatMap {
            payloadTemplate($0.value, captures: captures, names: names, reader: &reader)
        }
        var timeout: Int64 = 5_000
        if let entry = entries["timeout"], let value = reader.duration(entry.value, what: "'timeout'") {
            if value <= 0 { reader.error(entry.value, "'timeout' must be longer than 0") }
            timeout = value
        }
        return .webhook(url: url, body: body, timeoutMilliseconds: timeout)
    }

    static func parseCommand(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> Action.Handler? {
        var argumentsNode = node
        var timeout: Int64 = 10_000
        if case .mapping = node {
            guard let entries = reader.mapping(node, what: "a command action", allowed: ["run", "timeout"]),
                let entry = entries["run"]
            else {
                reader.error(node, "a command action needs 'run: [program, arguments...]'")
                return nil
            }
            argumentsNode = entry.value
            if let timeoutEntry = entries["timeout"] {
                timeout = reader.duration(timeoutEntry.value, what: "'timeout'") ?? timeout
            }
        }
        guard let items = reader.sequence(argumentsNode, what: "a command"), !items.isEmpty else {
            reader.error(argumentsNode, "a command needs at least the program to run")
            return nil
        }
        var arguments: [Template] = []
        for item in items {
            guard let text = reader.string(item, what: "a command argument") else { continue }
            let template = Template(text)
            checkPlaceholders(
                template,
                at: item,
                allowed: names + actionPlaceholders,
                captures: captures,
                reader: &reader
            )
            arguments.append(template)
        }
        return .command(arguments: arguments, timeoutMilliseconds: timeout)
    }

    static func payloadTemplate(
        _ node: Node,
        captures: [String],
        names: [String],
        reader: inout YAMLReader
    ) -> PayloadTemplate? {
        switch node {
        case .scalar(let scalar):
            guard let value = reader.json(node, what: "the payload") else { return nil }
            guard case .string = value else { return .literal(value) }
            let template = Template(scalar.string)
            if template.placeholders.isEmpty { return .literal(value) }
            checkPlaceholders(
                template,
                at: node,
                allowed: names + actionPlaceholders,
                captures: captures,
                reader: &reader
            )
            return .string(template)
        case .sequence(let sequence):
            var items: [PayloadTemplate] = []
            for item in sequence {
                guard let template = payloadTemplate(item, captures: captures, names: names, reader: &reader) else {
                    return nil
                }
                items.append(template)
            }
            return .array(items)
        case .mapping(let mapping):
            var keys: [String] = []
            var values: [PayloadTemplate] = []
            for (key, value) in mapping {
                guard case .scalar(let scalar) = key else {
                    reader.error(key, "payload keys must be strings")
                    return nil
                }
                guard let template = payloadTemplate(value, captures: captures, names: names, reader: &reader) else {
                    return nil
                }
                keys.append(scalar.string)
                values.append(template)
            }
            return .object(keys, values)
        case .alias:
            reader.error(node, "payloads cannot use YAML aliases")
            return nil
        }
    }

    static func checkPlaceholders(
        _ template: Template,
        at node: Node,
        allowed: [String],
        captures: [String],
        reader: inout YAMLReader
    ) {
        for name in template.placeholders where !allowed.contains(name) {
            let captured =
                captures.isEmpty ? "captures nothing" : "captures \(captures.map { "{\($0)}" }.joined(separator: ", "))"
            reader.error(
                node,
                "placeholder {\(name)} is not captured by the rule's topic (it \(captured); "
                    + "also available: \(allowed.filter { !captures.contains($0) }.map { "{\($0)}" }.joined(separator: ", ")))"
            )
        }
    }
}
