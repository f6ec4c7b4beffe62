import CoreMetrics
import DequeModule
import Logging
import Rules
import Synchronization

/// Runs actions through their handlers, many at once; a failure is logged with its rule and handler.
/// `finish()` stops taking new actions; `run()` returns once every action taken has completed.
///
/// Immediate actions (publishes) start on the thread that decided them and complete through a callback (the
/// broker's acknowledgement): no task and no continuation per command. At most `maximumUnacknowledged` of
/// them wait for their completion at once; past that they are held back and leave in order as acknowledgements
/// free room. An actuator command (a topic ending in `/set`) is held once per topic: a newer command for the
/// same topic replaces the one held (a command is a desired state, so only the latest matters; the replaced
/// one is counted as superseded). Any other publish (an alert, a notification) is never replaced.
public final class ActionDispatcher: Sendable {
    /// An action `run()` performs in a task of its own (handlers that are not immediate).
    struct Job: Sendable {
        var action: FiredAction
        var handler: Int
    }

    /// A handler with its name and counters, looked up once.
    struct Registered: Sendable {
        var handler: any ActionHandler
        var immediate: (any ImmediateActionHandler)?
        var name: String
        var sent: Counter
        var failed: Counter
    }

    /// Immediate actions started and not completed, and those held back.
    private struct Immediate {
        var next: UInt64 = 0
        /// Started, waiting for their completion, by the order they were started.
        var started: [UInt64: (action: FiredAction, handler: Int)] = [:]
        /// Held back while `started` is full: the latest action per topic, and the topics in order.
        var held: [String: (action: FiredAction, handler: Int)] = [:]
        var heldOrder: Deque<String> = []
        var heldSerial: UInt64 = 0

        /// Reserves a slot for the oldest held action, if there is one.
        mutating func startNextHeld() -> (key: UInt64, action: FiredAction, handler: Int)? {
            guard let topic = heldOrder.popFirst(), let entry = held.removeValue(forKey: topic) else { return nil }
            defer { next += 1 }
            started[next] = entry
            return (next, entry.action, entry.handler)
        }
    }

    private let handlers: [Registered]
    private let logger: Logger
    private let stream: AsyncStream<Job>
    private let continuation: AsyncStream<Job>.Continuation
    private let maximumInFlight: Int
    /// Immediate actions waiting for their completion at most; more are held back.
    let maximumUnacknowledged: Int
    private let finished = Atomic<Bool>(false)
    private let unfinished = Atomic<Int>(0)
    private let immediate = Mutex(Immediate())
    private let heldBack: Counter
    private let superseded: Counter

    public init(
        handlers: [any ActionHandler],
        logger: Logger,
        metrics: EngineMetrics = .discarded,
        maximumInFlight: Int = 256,
        maximumUnacknowledged: Int = 4_096
    ) {
        self.handlers = handlers.map { handler in
            let name = handler.name
            return Registered(
                handler: handler,
                immediate: handler as? any ImmediateActionHandler,
                name: name,
                sent: metrics.actionCounter(handler: name, outcome: "sent"),
                failed: metrics.actionCounter(handler: name, outcome: "failed")
            )
        }
        self.logger = logger
        self.maximumInFlight = maximumInFlight
        self.maximumUnacknowledged = max(1, maximumUnacknowledged)
        heldBack = metrics.actionsHeldBack
        superseded = metrics.actionCounter(handler: "publish", outcome: "superseded")
        (stream, continuation) = AsyncStream.makeStream(of: Job.self)
    }

    /// Takes an action: an immediate handler starts it right here (or holds it back, see above), others run
    /// it from `run()`'s tasks. False once `finish()` was called.
    @discardableResult
    public func enqueue(_ action: FiredAction) -> Bool {
        guard !finished.load(ordering: .acquiring) else {
            logger.warning(
                "action not run: the engine is shutting down",
                metadata: ["rule": "\(action.ruleID)", "transition": "\(action.transition.rawValue)"]
            )
            return false
        }
        guard let index = handlers.firstIndex(where: { $0.handler.handles(action.action) }) else { return true }
        guard handlers[index].immediate != nil else {
            unfinished.add(1, ordering: .relaxed)
            if case .terminated = continuation.yield(Job(action: action, handler: index)) {
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
        enum Decision {
            case start(UInt64)
            case held(replacing: Bool, total: Int)
        }
        let decision = immediate.withLock { state -> Decision in
            guard state.started.count >= maximumUnacknowledged || state.heldOrder.count > 0 else {
                defer { state.next += 1 }
                state.started[state.next] = (action, index)
                return .start(state.next)
            }
            state.heldSerial += 1
            let topic = ActionDispatcher.holdingKey(of: action, serial: state.heldSerial)
            let replacing = state.held.updateValue((action, index), forKey: topic) != nil
            if !replacing { state.heldOrder.append(topic) }
            return .held(replacing: replacing, total: state.heldOrder.count)
        }
        switch decision {
        case .start(let key):
            unfinished.add(1, ordering: .relaxed)
            start(key, action, handler: index)
        case .held(let replacing, let total):
            heldBack.increment()
            if replacing {
                superseded.increment()
            } else {
                unfinished.add(1, ordering: .relaxed)
            }
            if total.isPowerOfTwo && !replacing {
                logger.warning(
                    "commands held back: \(maximumUnacknowledged) wait for the broker's acknowledgement",
                    metadata: ["held": "\(total)", "rule": "\(action.ruleID)"]
                )
            }
        }
        return true
    }

    /// Starts an immediate action, then whatever held action a synchronous failure let through.
    private func start(_ key: UInt64, _ action: FiredAction, handler index: Int) {
        var next: (key: UInt64, action: FiredAction, handler: Int)? = (key, action, index)
        while let current = next {
            next = nil
            do {
                try handlers[current.handler].immediate?.start(current.action) { [self] result in
                    if let following = complete(current.key, result) {
                        start(following.key, following.action, handler: following.handler)
                    }
                }
            } catch {
                next = complete(current.key, .failure(error))
            }
        }
    }

    /// Records an immediate action's outcome; returns the held action that takes its slot, if any.
    private func complete(
        _ key: UInt64,
        _ result: Result<Void, some Error>
    ) -> (key: UInt64, action: FiredAction, handler: Int)? {
        let (entry, next) = immediate.withLock { state in
            (state.started.removeValue(forKey: key), state.startNextHeld())
        }
        guard let entry else { return next }  // abandoned at shutdown
        unfinished.subtract(1, ordering: .relaxed)
        switch result {
        case .success:
            handlers[entry.handler].sent.increment()
        case .failure(let error):
            logFailure(of: entry.action, handler: handlers[entry.handler], error: error)
        }
        return next
    }

    /// What a held-back action is kept under: an actuator command's topic (`…/set`: a newer command replaces it,
    /// as desired-state re-sends assume), otherwise a key of its own (alerts and notifications are never replaced).
    private static func holdingKey(of action: FiredAction, serial: UInt64) -> String {
        if case .publish(let topic, _, _, _) = action.action, topic.hasSuffix("/set") { return topic }
        return "\u{0}\(serial)"
    }

    /// Actions taken and not completed yet: queued, running, held back, or (publish) waiting for the broker's
    /// acknowledgement.
    public var unfinishedCount: Int { unfinished.load(ordering: .relaxed) }

    /// Started publishes whose acknowledgement has not come, in the order they were decided, then the held ones.
    public var unacknowledged: [FiredAction] {
        immediate.withLock { state in
            state.started.sorted { $0.key < $1.key }.map(\.value.action)
                + state.heldOrder.compactMap { state.held[$0]?.action }
        }
    }

    /// Forgets every started and held immediate action (shutdown: `drain()` published them again elsewhere);
    /// their completions, when they come, are ignored.
    public func abandonUnacknowledged() {
        let count = immediate.withLock { state in
            defer { state = Immediate(next: state.next) }
            return state.started.count + state.heldOrder.count
        }
        unfinished.subtract(count, ordering: .relaxed)
    }

    /// Stops taking actions; those already queued still run.
    public func finish() {
        finished.store(true, ordering: .releasing)
        continuation.finish()
    }

    /// Runs queued actions until `finish()` and the queue is drained.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for await job in stream {
                if inFlight >= maximumInFlight {
                    await group.next()
                    inFlight -= 1
                }
                inFlight += 1
                group.addTask { await self.perform(job) }
            }
            await group.waitForAll()
        }
    }

    private func perform(_ job: Job) async {
        defer { unfinished.subtract(1, ordering: .relaxed) }
        let registered = handlers[job.handler]
        do {
            try await registered.handler.perform(job.action)
            registered.sent.increment()
        } catch is CancellationError {
            // The engine stopped waiting (shutdown); `drain()` accounted for it.
        } catch {
            logFailure(of: job.action, handler: registered, error: error)
        }
    }

    /// Logs first, then counts: whoever sees the count can find the line.
    private func logFailure(of action: FiredAction, handler: Registered, error: any Error) {
        logger.error(
            "action failed",
            metadata: [
                "rule": "\(action.ruleID)", "transition": "\(action.transition.rawValue)",
                "handler": "\(handler.name)", "error": "\(error)",
            ]
        )
        handler.failed.increment()
    }
}

extension Int {
    fileprivate var isPowerOfTwo: Bool { self > 0 && (self & (self - 1)) == 0 }
}
