/// A broker address: `mqtt://[user[:password]@]host[:port]` or `mqtts://…` (TLS).
///
/// The default port is 1883 for `mqtt` and 8883 for `mqtts`. User and password may be
/// percent-encoded. The password never appears in `description`.
public struct BrokerURL: Sendable, Hashable, CustomStringConvertible {
    /// The host name or IP address (IPv6 without brackets).
    public var host: String
    /// The TCP port.
    public var port: Int
    /// True for `mqtts://`.
    public var usesTLS: Bool
    /// The user name from the URL, if any.
    public var username: String?
    /// The password from the URL, if any.
    public var password: String?

    /// Creates an address from its parts.
    public init(host: String, port: Int? = nil, usesTLS: Bool = false, username: String? = nil, password: String? = nil)
    {
        self.host = host
        self.port = port ?? (usesTLS ? 8883 : 1883)
        self.usesTLS = usesTLS
        self.username = username
        self.password = password
    }

    /// Parses a URL string; throws an `invalidConfiguration` error that names what is wrong.
    public init(parsing string: String) throws {
        func invalid(_ why: String) -> MQTTError {
            MQTTError(.invalidConfiguration, "invalid broker URL '\(BrokerURL.redacting(string))': \(why)")
        }
        guard let schemeEnd = string.firstRange(of: "://") else {
            throw invalid("expected mqtt://host[:port] or mqtts://host[:port]")
        }
        let scheme = string[..<schemeEnd.lowerBound].lowercased()
        switch scheme {
        case "mqtt", "tcp": usesTLS = false
        case "mqtts", "ssl", "tls": usesTLS = true
        default: throw invalid("unknown scheme '\(scheme)' (use mqtt or mqtts)")
        }
        var rest = Substring(string[schemeEnd.upperBound...])
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if rest.contains("/") || rest.contains("?") || rest.contains("#") {
            throw invalid("a broker URL has no path, query or fragment")
        }
        username = nil
        password = nil
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                username = try BrokerURL.percentDecoded(userInfo[..<colon], or: invalid("bad percent-encoding in user"))
                password = try BrokerURL.percentDecoded(
                    userInfo[userInfo.index(after: colon)...],
                    or: invalid("bad percent-encoding in password")
                )
            } else {
                username = try BrokerURL.percentDecoded(userInfo, or: invalid("bad percent-encoding in user"))
            }
            if username?.isEmpty == true { username = nil }
        }
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw invalid("unclosed '[' in IPv6 address") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected text after ']'") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            portText = rest[rest.index(after: colon)...]
        } else {
            host = String(rest)
        }
        guard !host.isEmpty else { throw invalid("missing host") }
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw invalid("port must be a number from 1 to 65535")
            }
            port = value
        } else {
            port = usesTLS ? 8883 : 1883
        }
    }

    public var description: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let user = username.map { password == nil ? "\($0)@" : "\($0):***@" } ?? ""
        return "\(usesTLS ? "mqtts" : "mqtt")://\(user)\(hostPart):\(port)"
    }

    /// The URL text with any password replaced by `***`, for error messages.
    static func redacting(_ string: String) -> String {
        guard let schemeEnd = string.firstRange(of: "://"), let at = string.lastIndex(of: "@"),
            at > schemeEnd.upperBound
        else { return string }
        let userInfo = string[schemeEnd.upperBound..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return string }
        return String(string[..<colon]) + ":***" + String(string[at...])
    }

    private static func percentDecoded(_ text: Substring, or error: MQTTError) throws -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    throw error
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else { throw error }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
