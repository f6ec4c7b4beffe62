import FileFormats
import Testing

@Suite("Actuator state payloads")
struct ActuatorStateTests {
    @Test(
        arguments: [
            (#"{"state": "on", "reason": "x"}"#, "on"), (#"{"reason": "x", "state": "OFF"}"#, "OFF"),
            (#""open""#, "open"),
            ("on", "on"), ("ON", "ON"), ("half open", "half open"), (#"{"state": true}"#, nil), (#"{"value": 1}"#, nil),
            ("1", nil), ("", nil), ("[\"on\"]", nil),
        ] as [(String, String?)]
    )
    func name(payload: String, expected: String?) {
        #expect(ActuatorState.name(in: Array(payload.utf8)) == expected)
    }

    @Test(arguments: [("on", "ON", true), ("On", "on", true), ("on", "off", false), ("open", "opened", false)])
    func same(a: String, b: String, expected: Bool) {
        #expect(ActuatorState.same(a, b) == expected)
    }
}
