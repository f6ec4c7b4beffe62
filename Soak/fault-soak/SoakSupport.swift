import Foundation
import MQTTTestSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct SoakError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One line of the soak's table.
struct FaultRow {
    var fault: String
    var injected: Int
    /// Readings (or, for rule files, rule sets) lost; nil where the fault cannot lose any.
    var lost: Int?
    var duplicated: Int?
    /// Recovery times, in milliseconds.
    var recoveries: [Double] = []
    /// What else was counted (crashes, reported losses, detection times).
    var detail: String
    /// Whether the row met its expectations.
    var passed: Bool

    static func header() -> String {
        "fault                        injected  lost  duplicated  recovered-in p50 / max   detail"
    }

    var line: String {
        func pad(_ text: String, _ width: Int) -> String {
            text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0)
        }
        return pad(fault, 28) + " " + pad(String(injected), 9) + " " + pad(lost.map(String.init) ?? "-", 5) + " "
            + pad(duplicated.map(String.init) ?? "-", 11) + " " + pad(Self.summary(recoveries), 24) + " " + detail
            + (passed ? "" : "   FAILED")
    }

    /// "p50 / max" of milliseconds.
    static func summary(_ milliseconds: [Double]) -> String {
        guard !milliseconds.isEmpty else { return "-" }
        let sorted = milliseconds.sorted()
        return String(format: "%.0f / %.0f ms", sorted[sorted.count / 2], sorted[sorted.count - 1])
    }
}

extension Duration {
    var milliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }
}

/// GET from the engine's HTTP endpoint.
func get(_ port: Int, _ path: String) async throws -> (status: Int, body: String) {
    let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// Every sample of `/metrics`, by its series text (`name{label="value"}`).
func metrics(_ port: Int) async throws -> [String: Double] {
    var result: [String: Double] = [:]
    for line in try await get(port, "/metrics").body.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
            continue
        }
        result[String(line[..<space])] = value
    }
    return result
}

/// Polls `condition` every 10 ms until it holds; returns how long that took, or throws after `limit`.
@discardableResult
func waitUntil(
    _ what: String,
    limit: Duration = .seconds(60),
    _ condition: () async throws -> Bool
) async throws -> Duration {
    let start = ContinuousClock.now
    while !(try await condition()) {
        guard ContinuousClock.now - start < limit else { throw SoakError("\(what): not within \(limit)") }
        try await Task.sleep(for: .milliseconds(10))
    }
    return ContinuousClock.now - start
}

/// The repository's root (rules/, Devices/).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path
