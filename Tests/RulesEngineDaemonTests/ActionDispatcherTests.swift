import FileFormats
import Logging
import Synchronization
import Testing

@testable import Rules
@testable import RulesEngineDaemon

/// Commands under a storm: at most `maximumUnacknowledged` wait for their acknowledgement; the others are
/// held back one per topic (a newer one replaces the held one) and leave in order as room frees up.
@Suite("Action dispatcher")
struct ActionDispatcherTests {
    /// Starts publishes and completes them only when the test says so, as a broker acknowledging late.
    final class ManualHandler: ImmediateActionHandler {
        struct Started {
            var command: String
            var completion: @Sendable (Result<Void, any Error>) -> Void
        }
        let started = Mutex<[Started]>([])

        func handles(_ action: RenderedAction) -> Bool {
            if case .publish = action { return true }
            return false
        }

        func perform(_ action: FiredAction) async throws {}

        func start(_ action: FiredAction, completion: @escaping @Sendable (Result<Void, any Error>) -> Void) throws {
            guard case .publish(let topic, let payload, _, _) = action.action else { return }
            started.withLock { $0.append(Started(command: "\(topic) \(payload.jsonText)", completion: completion)) }
        }

        var commands: [String] { started.withLock { $0.map(\.command) } }

        /// Acknowledges the `index`th command started.
        func acknowledge(_ index: Int) {
            started.withLock { $0[index] }.completion(.success(()))
        }
    }

    static func command(_ topic: String, _ state: String) -> FiredAction {
        FiredAction(
            decision: TransitionRecord(
                timestamp: 0,
                ruleID: "r",
                transition: state == "on" ? .fire : .clear,
                labels: [],
                severity: .warning,
                reason: "",
                value: nil
            ),
            action: .publish(topic: topic, payload: .string(state), qos: 1, retain: false)
        )
    }

    static func dispatcher(_ handler: ManualHandler, maximumUnacknowledged: Int) -> ActionDispatcher {
        ActionDispatcher(
            handlers: [handler],
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
            maximumUnacknowledged: maximumUnacknowledged
        )
    }

    @Test func commandsPastTheBoundAreHeldBackOnePerTopicAndLeaveInOrder() {
        let handler = ManualHandler()
        let dispatcher = Self.dispatcher(handler, maximumUnacknowledged: 2)
        for (topic, state) in [
            ("a/set", "on"), ("b/set", "on"), ("c/set", "on"), ("c/set", "off"), ("alerts/x", "on"),
            ("alerts/x", "off"), ("a/set", "off"),
        ] {
            #expect(dispatcher.enqueue(Self.command(topic, state)))
        }
        #expect(handler.commands == [#"a/set "on""#, #"b/set "on""#], "two wait for their acknowledgement")
        #expect(dispatcher.unfinishedCount == 6, "c on was superseded by c off; an alert is never superseded")
        #expect(
            dispatcher.unacknowledged.count == 6,
            "the held ones count as unacknowledged (a shutdown publishes them again)"
        )

        handler.acknowledge(0)
        #expect(handler.commands.last == #"c/set "off""#, "the oldest held topic leaves first, with its latest command")
        for index in 1..<6 { handler.acknowledge(index) }
        #expect(
            handler.commands == [
                #"a/set "on""#, #"b/set "on""#, #"c/set "off""#, #"alerts/x "on""#, #"alerts/x "off""#, #"a/set "off""#,
            ]
        )
        #expect(dispatcher.unfinishedCount == 0)
        #expect(dispatcher.unacknowledged.isEmpty)
    }

    @Test func abandoningAtShutdownForgetsWhatWasStartedAndHeld() {
        let handler = ManualHandler()
        let dispatcher = Self.dispatcher(handler, maximumUnacknowledged: 1)
        dispatcher.enqueue(Self.command("a/set", "on"))
        dispatcher.enqueue(Self.command("b/set", "on"))
        #expect(dispatcher.unfinishedCount == 2)
        dispatcher.abandonUnacknowledged()
        #expect(dispatcher.unfinishedCount == 0)
        handler.acknowledge(0)  // a late acknowledgement of a forgotten command changes nothing
        #expect(dispatcher.unfinishedCount == 0)
        #expect(handler.commands == [#"a/set "on""#])
    }
}
