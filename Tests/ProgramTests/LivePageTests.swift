import Foundation
import MQTT
import MQTTTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The live page of `rules-engine run --http`, fed by the demo's world, loaded in headless Chromium.
@Suite("Live page, live")
struct LivePageTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    /// The demo's sensors on the shipped rules' topics.
    static let demoSensors = [
        "sensors/freezer-1/cabinet_temperature", "sensors/freezer-1/door", "sensors/gh-1/air_temperature",
        "sensors/gh-1/humidity", "sensors/gh-1/soil_moisture", "sensors/gh-1/window", "sensors/rack-a1/temperature",
        "sensors/rack-a2/temperature", "sensors/freezer-1/probe-a/temperature",
    ]

    static func browse(_ arguments: [String]) async throws -> ChildProcess {
        let browser = try ChildProcess(
            chromium ?? "chromium",
            ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"] + arguments
        )
        let status = try await withTimeout(.seconds(60), "chromium") { await browser.waitForExitAndOutput() }
        #expect(status == 0, "chromium: \(browser.standardError.suffix(2000))")
        return browser
    }

    @Test(.enabled(if: chromium != nil, "needs Debian's chromium (scripts/install-dependencies.sh installs it)"))
    func thePageShowsTheDemoInABrowser() async throws {
        let broker = try await TestBroker()
        let port = try TestBroker.freePort()
        let root = RulesEngineCommandTests.packageRoot
        let engine = try ChildProcess(
            builtProductPath("rules-engine"),
            [
                "run", "--rules", root + "/rules", "--broker", broker.url.description, "--client-id",
                uniqueTopicPrefix("live-engine"), "--http", "127.0.0.1:\(port)",
            ]
        )
        try await engine.waitForLine("ready")
        let simulator = try ChildProcess(
            builtProductPath("sensor-sim"),
            ["run", root + "/Devices", "--broker", broker.url.description, "--speed", "10"]
        )
        try await simulator.waitForLine("ready")
        let page = URL(string: "http://127.0.0.1:\(port)/")!
        // Every demo sensor has been read (the page carries its first snapshot).
        try await withTimeout(.seconds(60), "every demo sensor on the page") {
            while true {
                let html = String(decoding: try await URLSession.shared.data(from: page).0, as: UTF8.self)
                if Self.demoSensors.allSatisfy({ html.contains("\"topic\":\"\($0)\"") }) { break }
                try await Task.sleep(for: .milliseconds(200))
            }
        }

        let dom = try await Self.browse(["--dump-dom", page.absoluteString]).output.joined(separator: "\n")
        for sensor in Self.demoSensors { #expect(dom.contains("data-topic=\"\(sensor)\""), "\(sensor) not drawn") }
        #expect(dom.contains("rack-cooling"))
        // A combined rule's instance shows each of its leaves, a group each of its members.
        #expect(dom.contains("greenhouse-vent") && dom.contains(#"<span class="leaf"#))
        #expect(dom.contains(">humidity ") && dom.contains(">temperature ") && dom.contains(">window "))
        #expect(dom.contains("freezer-probes-warm") && dom.contains(">probe-a "))
        #expect(dom.contains(#"data-topic="actuators/rack-a1/cooling/state""#))
        #expect(!dom.contains("connecting…"), "the first snapshot was not drawn")
        // Charts with the rules' thresholds drawn, a state timeline per instance.
        #expect(dom.contains(#"class="chart""#) && dom.contains(#"stroke-dasharray="6 4""#))
        #expect(dom.contains(#"class="timeline""#))

        // Nothing is cut, on a laptop or a phone; `/?rule=ID` opens that rule's explanation with its YAML.
        let focused = page.absoluteString + "?rule=rack-cooling"
        for size in ["1280,800", "390,844"] {
            let shown = try await Self.browse(["--window-size=\(size)", "--dump-dom", focused]).output.joined(
                separator: "\n"
            )
            let cut = shown.firstMatch(of: /data-cut="([^"]*)"/).map { String($0.output.1) }
            #expect(cut == "", "cut at \(size): \(cut ?? "no check ran")")
            #expect(shown.contains("rule rack-cooling — \(root)/rules/server-room.yaml:4"), "no explanation at \(size)")
            #expect(shown.contains("avg: 1m"), "the rule's YAML is not shown at \(size)")
            let screenshot = try TestBroker.makeDirectory() + "/live-page.png"
            _ = try await Self.browse(["--window-size=\(size)", "--screenshot=\(screenshot)", focused])
            let png = try Data(contentsOf: URL(fileURLWithPath: screenshot))
            #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 10_000, "\(png.count) bytes")
        }

        // The page keeps itself current through server-sent events.
        let events = try ChildProcess(
            "/usr/bin/curl",
            ["-s", "-N", "-i", "--max-time", "3", "http://127.0.0.1:\(port)/events"]
        )
        _ = await events.waitForExitAndOutput()  // curl stops the endless stream after 3 s
        let stream = events.output.joined(separator: "\n")
        #expect(stream.lowercased().contains("content-type: text/event-stream"), "\(stream.prefix(300))")
        #expect(stream.components(separatedBy: "event: snapshot").count >= 3, "one snapshot a second")
        #expect(stream.contains("data: {\"now\":"))

        simulator.signal(SIGTERM)
        engine.signal(SIGTERM)
        #expect(await simulator.waitForExit() == 0)
        #expect(await engine.waitForExit() == 0)
    }
}
