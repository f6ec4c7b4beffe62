import FileFormats
import Foundation
import Yams

/// `rules-engine run --webhook-config FILE`: per URL prefix, the headers, the `Authorization` header (read
/// from its own file, so that no secret is in a rule file or on a command line) and the CA that webhook
/// actions to those URLs use.
///
/// ```yaml
/// endpoints:
///   - url: https://hooks.example.org/
///     headers: {X-Team: ops}
///     authorization_file: /etc/sensor-pipeline/hooks-token
///     ca_file: /etc/sensor-pipeline/hooks-ca.pem
/// ```
public struct WebhookSettings: Sendable {
    public struct Endpoint: Sendable {
        /// Applies to action URLs that start with this.
        public var urlPrefix: String
        public var headers: [(name: String, value: String)]
        /// PEM certificates to trust instead of the system's (the host name is verified all the same).
        public var caFile: String?
    }

    public var endpoints: [Endpoint]

    public init(endpoints: [Endpoint] = []) {
        self.endpoints = endpoints
    }

    /// The endpoint with the longest prefix of `url`.
    public func endpoint(for url: String) -> Endpoint? {
        endpoints.filter { url.hasPrefix($0.urlPrefix) }.max { $0.urlPrefix.count < $1.urlPrefix.count }
    }

    /// Reads and validates the file; every problem as `FILE:LINE:COL: message`. Authorization files are read
    /// now (their content, trimmed, is the header's value).
    public static func load(path: String) throws -> WebhookSettings {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw WebhookSettingsError(["\(path): cannot read the webhook configuration"])
        }
        var reader = YAMLReader(file: path)
        var endpoints: [Endpoint] = []
        if let root = reader.compose(text),
            let top = reader.mapping(root, what: "a webhook configuration", allowed: ["endpoints"])
        {
            if let list = top["endpoints"], let items = reader.sequence(list.value, what: "'endpoints'") {
                endpoints = items.compactMap { parseEndpoint($0, reader: &reader) }
            } else if top["endpoints"] == nil {
                reader.error(root, "a webhook configuration needs an 'endpoints:' list")
            }
        }
        guard reader.diagnostics.isEmpty else {
            throw WebhookSettingsError(reader.diagnostics.sorted().map(\.description))
        }
        return WebhookSettings(endpoints: endpoints)
    }

    static func parseEndpoint(_ node: Node, reader: inout YAMLReader) -> Endpoint? {
        guard
            let entries = reader.mapping(
                node,
                what: "an endpoint",
                allowed: ["url", "headers", "authorization_file", "ca_file"]
            )
        else { return nil }
        guard let urlEntry = entries["url"], let url = reader.string(urlEntry.value, what: "'url'") else {
            if entries["url"] == nil {
                reader.error(node, "an endpoint needs a 'url' (the prefix of the URLs it is for)")
            }
            return nil
        }
        if !(url.lowercased().hasPrefix("https://") || url.lowercased().hasPrefix("http://")) {
            reader.error(urlEntry.value, "'url' '\(url)' must start with https:// or http://")
        }
        var headers: [(name: String, value: String)] = []
        if let entry = entries["headers"], case .mapping(let mapping) = entry.value {
            for (key, value) in mapping {
                guard let name = reader.string(key, what: "a header name"),
                    let text = reader.string(value, what: "a header value")
                else { continue }
                if name.lowercased() == "authorization" {
                    reader.error(key, "the Authorization header comes from 'authorization_file', not from 'headers'")
                } else if name.isEmpty || !name.utf8.allSatisfy(isTokenByte) {
                    reader.error(key, "'\(name)' is not a header name")
                } else if text.contains(where: { $0 == "\r" || $0 == "\n" }) {
                    reader.error(value, "a header value cannot span lines")
                } else {
                    headers.append((name, text))
                }
            }
        } else if let entry = entries["headers"] {
            reader.error(entry.value, "'headers' must map header names to values")
        }
        if let entry = entries["authorization_file"],
            let file = reader.string(entry.value, what: "'authorization_file'")
        {
            if let secret = try? String(contentsOfFile: file, encoding: .utf8) {
                let value = secret.trimmingCharacters(in: .whitespacesAndNewlines)
                if value.isEmpty || value.contains(where: { $0 == "\r" || $0 == "\n" }) {
                    reader.error(entry.value, "'\(file)' must hold one line: the Authorization header's value")
                } else {
                    headers.append(("Authorization", value))
                }
            } else {
                reader.error(entry.value, "cannot read the authorization file '\(file)'")
            }
        }
        var caFile: String?
        if let entry = entries["ca_file"], let file = reader.string(entry.value, what: "'ca_file'") {
            if FileManager.default.isReadableFile(atPath: file) {
                caFile = file
            } else {
                reader.error(entry.value, "cannot read the CA file '\(file)'")
            }
        }
        return Endpoint(urlPrefix: url, headers: headers, caFile: caFile)
    }

    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

/// A webhook configuration that cannot be used; one line per problem.
public struct WebhookSettingsError: Error, CustomStringConvertible {
    public var problems: [String]
    public init(_ problems: [String]) { self.problems = problems }
    public var description: String { problems.joined(separator: "\n") }
}
