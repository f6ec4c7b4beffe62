import MQTT
import Testing

@Suite("Broker URL parsing")
struct BrokerURLTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var text: String
        var host: String
        var port: Int
        var tls: Bool
        var user: String?
        var password: String?
        var testDescription: String { text }
    }

    @Test(arguments: [
        Case(text: "mqtt://127.0.0.1", host: "127.0.0.1", port: 1883, tls: false),
        Case(text: "mqtt://broker.local:1884", host: "broker.local", port: 1884, tls: false),
        Case(text: "mqtts://broker.local", host: "broker.local", port: 8883, tls: true),
        Case(text: "mqtts://broker.local:9000/", host: "broker.local", port: 9000, tls: true),
        Case(text: "mqtt://alice@h", host: "h", port: 1883, tls: false, user: "alice"),
        Case(
            text: "mqtt://alice:s3cr%40t@h:2000",
            host: "h",
            port: 2000,
            tls: false,
            user: "alice",
            password: "s3cr@t"
        ),
        Case(text: "mqtt://a:b:c@h", host: "h", port: 1883, tls: false, user: "a", password: "b:c"),
        Case(text: "mqtt://[::1]:1990", host: "::1", port: 1990, tls: false),
    ])
    func parses(_ example: Case) throws {
        let url = try BrokerURL(parsing: example.text)
        #expect(url.host == example.host)
        #expect(url.port == example.port)
        #expect(url.usesTLS == example.tls)
        #expect(url.username == example.user)
        #expect(url.password == example.password)
    }

    @Test(arguments: [
        ("127.0.0.1:1883", "expected mqtt://"),
        ("http://h", "unknown scheme 'http'"),
        ("mqtt://", "missing host"),
        ("mqtt://h:0", "port must be"),
        ("mqtt://h:99999", "port must be"),
        ("mqtt://h:12x", "port must be"),
        ("mqtt://h/path", "no path"),
        ("mqtt://u:p%zz@h", "percent-encoding in password"),
    ])
    func rejects(text: String, expected: String) {
        #expect {
            try BrokerURL(parsing: text)
        } throws: { error in
            guard let error = error as? MQTTError else { return false }
            return error.kind == .invalidConfiguration && error.message.contains(expected)
        }
    }

    @Test func passwordNeverShown() throws {
        let url = try BrokerURL(parsing: "mqtt://alice:topsecret@h")
        #expect(!url.description.contains("topsecret"))
        #expect(url.description == "mqtt://alice:***@h:1883")
        #expect {
            try BrokerURL(parsing: "mqtt://alice:topsecret@h:port")
        } throws: { error in
            !"\(error)".contains("topsecret")
        }
    }
}
