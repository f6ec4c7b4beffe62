import Logging
import Rules
import Synchronization

/// Runs actions through their handlers, many at once; a failure is logged with its rule and handler.
/// `finish()` stops taking new actions; `run()` returns once every action taken has completed.
public final class ActionDispatcher: Sendable {
    /// An action on its way: started already (immediate handlers) or to be performed by a task.
    struct Job: Sendable {
        var action: FiredAction
        var handler: any ActionHandler
        var run: @Sendable () async throws -> Void
    }

    private let handlers: [any ActionHandler]
    private let logger: Logger
    private let stream: AsyncStream<Job>
    private let continuation: AsyncStream<Job>.Continuation
    private let maximumInFlight: Int
    private let finished = Atomic<Bool>(false)
    private let unfinished = Atomic<Int>(0)
    /// Started immediate actions (publishes) waiting for their completion, by the order they were taken.
    private let waiting = Mutex(Waiting())

    private struct Waiting {
        var next: UInt64 = 0
        var actions: [UInt64: FiredAction] = [:]
    }
    private let metrics: EngineMetrics

    public init(
        handlers: [any ActionHandler],
        logger: Logger,
        metrics: EngineMetrics = .discarded,
        maximumInFlight: Int = 256
    ) {
        self.handlers = handlers
        self.logger = logger
        self.metrics = metrics
        self.maximumInFlight = maximumInFlight
        (stream, continuation) = AsyncStream.makeStream(of: Job.self)
    }

    /// Takes an action: an immediate handler starts it right here, others run it from `run()`'s tasks.
    /// False once `finish()` was called.
    @discardableResult
    public func enqueue(_ action: FiredAction) -> Bool {
        guard !finished.load(ordering: .acquiring) else {
            logger.warning(
                "action not run: the engine is shutting down",
                metadata: ["rule": "\(action.ruleID)", "transition": "\(action.transition.rawValue)"]
            )
            return false
        }
        guard let handler = handlers.first(where: { $0.handles(action.action) }) else { return true }
        let run: @Sendable () async throws -> Void
        if let immediate = handler as? any ImmediateActionHandler {
            let completion: @Sendable () async throws -> Void
            do {
                completion = try immediate.start(action)
            } catch {
                logFailure(of: action, handler: handler, error: error)
                return true
            }
            let key = waiting.withLock { waiting in
                defer { waiting.next += 1 }
                waiting.actions[waiting.next] = action
                return waiting.next
            }
            run = { [self] in
                defer { _ = waiting.withLock { $0.actions.removeValue(forKey: key) } }
                try await completion()
            }
        } else {
            run = { try await handler.perform(action) }
        }
        unfinished.add(1, ordering: .relaxed)
        if case .terminated = continuation.yield(Job(action: action, handler: handler, run: run)),
            !(handler is any ImmediateActionHandler)
        {
            unfinished.subtract(1, ordering: .relaxed)
            // `finish()` came between the check above and here.
            logger.warning(
                "action not run: the engine is shutting down",
                metadata: ["rule": "\(action.ruleID)", "transition": "\(action.transition.rawValue)"]
            )
            return false
        }
        return true
    }

    /// Actions taken and not completed yet: queued, running, or (publish) waiting for the broker's acknowledgement.
    public var unfinishedCount: Int { unfinished.load(ordering: .relaxed) }

    /// Started publishes whose acknowledgement has not come, in the order they were decided.
    public var unacknowledged: [FiredAction] {
        waiting.withLock { waiting in waiting.actions.sorted { $0.key < $1.key }.map(\.value) }
    }

    /// Stops taking actions; those already queued still run.
    public func finish() {
        finished.store(true, ordering: .releasing)
        continuation.finish()
    }

    /// Runs queued actions (or waits for those started) until `finish()` and the queue is drained.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for await job in stream {
                if inFlight >= maximumInFlight {
                    await group.next()
                    inFlight -= 1
                }
                inFlight += 1
                group.addTask { await self.complete(job) }
            }
            await group.waitForAll()
        }
    }

    private func complete(_ job: Job) async {
        defer { unfinished.subtract(1, ordering: .relaxed) }
        do {
            try await job.run()
            metrics.action(handler: job.handler.name, succeeded: true)
        } catch is CancellationError {
            // The engine stopped waiting (shutdown); `drain()` accounted for it.
        } catch {
            logFailure(of: job.action, handler: job.handler, error: error)
        }
    }

    private func logFailure(of action: FiredAction, handler: any ActionHandler, error: any Error) {
        metrics.action(handler: handler.name, succeeded: false)
        logger.error(
            "action failed",
            metadata: [
                "rule": "\(action.ruleID)", "transition": "\(action.transition.rawValue)",
                "handler": "\(String(describing: type(of: handler)))", "error": "\(error)",
            ]
        )
    }
}
