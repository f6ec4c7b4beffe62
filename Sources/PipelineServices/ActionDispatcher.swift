import Logging
import Rules

/// Runs actions through their handlers, many at once; a failure is logged with its rule and handler.
/// `finish()` stops taking new actions; `run()` returns once every action taken has completed.
public final class ActionDispatcher: Sendable {
    private let handlers: [any ActionHandler]
    private let logger: Logger
    private let stream: AsyncStream<FiredAction>
    private let continuation: AsyncStream<FiredAction>.Continuation
    private let maximumInFlight: Int

    public init(handlers: [any ActionHandler], logger: Logger, maximumInFlight: Int = 256) {
        self.handlers = handlers
        self.logger = logger
        self.maximumInFlight = maximumInFlight
        (stream, continuation) = AsyncStream.makeStream(of: FiredAction.self)
    }

    /// Queues an action; false once `finish()` was called.
    @discardableResult
    public func enqueue(_ action: FiredAction) -> Bool {
        if case .terminated = continuation.yield(action) {
            logger.warning(
                "action not run: the engine is shutting down",
                metadata: ["rule": "\(action.ruleID)", "transition": "\(action.transition.rawValue)"]
            )
            return false
        }
        return true
    }

    /// Stops taking actions; those already queued still run.
    public func finish() {
        continuation.finish()
    }

    /// Runs queued actions until `finish()` and the queue is drained.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for await action in stream {
                if inFlight >= maximumInFlight {
                    await group.next()
                    inFlight -= 1
                }
                inFlight += 1
                group.addTask { await self.perform(action) }
            }
            await group.waitForAll()
        }
    }

    private func perform(_ action: FiredAction) async {
        guard let handler = handlers.first(where: { $0.handles(action.action) }) else { return }
        do {
            try await handler.perform(action)
        } catch {
            let name = String(describing: type(of: handler))
            logger.error(
                "action failed",
                metadata: [
                    "rule": "\(action.ruleID)", "transition": "\(action.transition.rawValue)", "handler": "\(name)",
                    "error": "\(error)",
                ]
            )
        }
    }
}
