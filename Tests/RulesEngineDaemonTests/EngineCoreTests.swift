import FileFormats
import Foundation
import Logging
import MQTT
import Rules
import Synchronization
import Testing

@testable import RulesEngineDaemon

/// The engine's core in process: decisions from the network thread (readings) and the clock (timers)
/// at the same time.
@Suite("Engine core")
struct EngineCoreTests {
    /// Records the order in which commands reach their handler.
    final class RecordingHandler: ImmediateActionHandler {
        let order = Mutex<[String]>([])

        func handles(_ action: RenderedAction) -> Bool {
            if case .publish = action { return true }
            return false
        }

        func perform(_ action: FiredAction) async throws {}

        func start(_ action: FiredAction, completion: @escaping @Sendable (Result<Void, any Error>) -> Void) throws {
            if case .publish(let topic, let payload, _, _) = action.action {
                order.withLock { $0.append("\(topic) \(payload.jsonText)") }
            }
            completion(.success(()))
        }
    }

    /// Commands reach the actuators in the order they were decided (the audit trail's order), even when
    /// a timer on the clock's thread and a reading on the network thread decide at the same moment: a
    /// `stale` fire and a late reading's clear must never arrive as off-then-on.
    @Test func commandsAreDeliveredInTheOrderTheyWereDecided() async throws {
        let ruleSet = try RuleLoader.load([
            RuleSource(
                path: "rules.yaml",
                text: """
                    rules:
                      - id: r
                        topic: "sensors/{device}/temperature"
                        above: 50
                        stale: 1ms
                        on_fire:
                          - publish: {topic: "actuators/{device}/x/set", payload: {state: "on", value: "{value}"}}
                        on_clear:
                          - publish: {topic: "actuators/{device}/x/set", payload: {state: "off", value: "{value}"}}
                    """
            )
        ])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let auditPath = directory + "/audit.jsonl"
        let handler = RecordingHandler()
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let core = EngineCore(
            ruleSet: ruleSet,
            dispatcher: ActionDispatcher(handlers: [handler], logger: logger),
            desiredState: DesiredStateTracker(),
            store: nil,
            audit: try AuditTrail(path: auditPath),
            logger: logger
        )
        let clock = SharedClock()
        let rounds = 20_000
        // Two threads of their own, awaited without holding one of the test run's few threads.
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await Self.onAThread {
                    for index in 0..<rounds {
                        let time = clock.tick()
                        let payload = Array((index % 3 == 0 ? "60" : "40").utf8)
                        core.handle(MQTTMessage(topic: "sensors/d\(index % 4)/temperature", payload: payload), at: time)
                    }
                }
            }
            group.addTask {
                await Self.onAThread {
                    for _ in 0..<rounds {
                        core.advance(to: clock.tick())
                    }
                }
            }
        }

        let audited = try String(contentsOfFile: auditPath, encoding: .utf8).split(separator: "\n").compactMap {
            line -> String? in
            guard let object = JSONValue(parsing: String(line)), case .string("command")? = object["event"],
                case .string(let topic)? = object["topic"], let payload = object["payload"]
            else { return nil }
            return "\(topic) \(payload.jsonText)"
        }
        let delivered = handler.order.withLock { $0 }
        #expect(audited.count > 1000, "the scenario makes many commands on both threads")
        #expect(delivered.count == audited.count)
        let firstDifference = zip(delivered, audited).enumerated().first { $0.element.0 != $0.element.1 }
        #expect(firstDifference == nil, "delivered out of order at command \(firstDifference?.offset ?? -1)")
    }

    final class SharedClock: Sendable {
        private let now = Atomic<Int64>(0)
        func tick() -> Int64 { now.add(1, ordering: .relaxed).newValue }
    }

    static func onAThread(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            Thread {
                body()
                continuation.resume()
            }.start()
        }
    }

    /// A full disk under `--audit` is counted and logged, not ignored; evaluation goes on.
    @Test func anAuditWriteThatFailsIsCounted() throws {
        let ruleSet = try RuleLoader.load([
            RuleSource(path: "rules.yaml", text: "rules:\n  - {id: r, topic: \"s/{d}\", above: 50}\n")
        ])
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let core = EngineCore(
            ruleSet: ruleSet,
            dispatcher: ActionDispatcher(handlers: [], logger: logger),
            desiredState: DesiredStateTracker(),
            store: nil,
            audit: try AuditTrail(path: "/dev/full"),
            logger: logger
        )
        core.handle(MQTTMessage(topic: "s/d", payload: Array("60".utf8)), at: 0)
        core.handle(MQTTMessage(topic: "s/d", payload: Array("40".utf8)), at: 1)
        #expect(core.problems.totals["audit_write_failed"] == 2)
        #expect(core.instanceReports(ruleID: nil).first?.state == .inactive)
    }
}
