import FileFormats
import Testing

@testable import RulesEngineDaemon

@Suite("Live page feed")
struct LiveFeedTests {
    /// The unit comes from the payload when it names one, from the device files when it does not.
    @Test func unitsComeFromThePayloadOrTheDeviceFiles() {
        let feed = LiveFeed(units: ["sensors/t/level": "cm", "sensors/r/temperature": "K"])
        feed.observe(topic: "sensors/t/level", payload: Array("42".utf8), isState: false, at: 1000)
        feed.observe(
            topic: "sensors/r/temperature",
            payload: Array(#"{"value": 21, "unit": "°C"}"#.utf8),
            isState: false,
            at: 1000
        )
        let snapshot = feed.snapshot(instances: [], now: 2000)
        guard case .array(let sensors)? = snapshot["sensors"] else {
            Issue.record("no sensors in \(snapshot)")
            return
        }
        #expect(sensors.map { $0["unit"] } == [.string("°C"), .string("cm")])
    }
}
