/// The state an actuator's command or state payload names, read one way everywhere (simulator, desired
/// state, live page, monitor): `{"state": "on", …}`, the JSON string `"on"`, or the bare text `on`.
/// State names compare without case: Home Assistant says `ON` where a device file says `on`.
public enum ActuatorState {
    /// The state named by `payload`, as written; nil when it names none (a number, an object without a
    /// string `state`).
    public static func name(in payload: [UInt8]) -> String? {
        switch JSONValue(parsing: payload) {
        case .object(let pairs)?:
            if case .string(let state)? = pairs.first(where: { $0.key == "state" })?.value { return state }
            return nil
        case .string(let state)?: return state
        case nil:
            let text = String(decoding: payload, as: UTF8.self)
            return text.isEmpty ? nil : text
        default: return nil
        }
    }

    /// Whether two state names are the same state.
    public static func same(_ a: String, _ b: String) -> Bool {
        a.lowercased() == b.lowercased()
    }
}
