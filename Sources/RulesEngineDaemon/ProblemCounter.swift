import Logging
import Synchronization

/// Counts unusable readings per reason and logs each reason at most once per second.
public final class ProblemCounter: Sendable {
    struct Entry {
        var total = 0
        var sinceLastLog = 0
        var lastLoggedAt: Int64?
        var message: Logger.Message = ""
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Counts one problem; logs it (with how many came since the last log) when a second has passed.
    public func record(
        _ reason: String,
        at time: Int64,
        message: Logger.Message = "reading not usable",
        amount: Int = 1,
        detail: @autoclosure () -> Logger.Metadata
    ) {
        let (shouldLog, count) = entries.withLock { entries -> (Bool, Int) in
            var entry = entries[reason, default: Entry()]
            entry.message = message
            entry.total += amount
            entry.sinceLastLog += amount
            let due = entry.lastLoggedAt.map { time - $0 >= 1000 } ?? true
            let count = entry.sinceLastLog
            if due {
                entry.lastLoggedAt = time
                entry.sinceLastLog = 0
            }
            entries[reason] = entry
            return (due, count)
        }
        guard shouldLog else { return }
        var metadata = detail()
        metadata["reason"] = "\(reason)"
        metadata["count"] = "\(count)"
        logger.warning(message, metadata: metadata)
    }

    /// Logs the counts held back by the once-a-second limit when their second has passed, so that the end
    /// of a burst is reported even when nothing follows it. Called from the engine's clock loop.
    public func flush(at time: Int64) {
        let due = entries.withLock { entries -> [(String, Logger.Message, Int)] in
            var due: [(String, Logger.Message, Int)] = []
            for (reason, entry) in entries where entry.sinceLastLog > 0 {
                guard let last = entry.lastLoggedAt, time - last >= 1000 else { continue }
                due.append((reason, entry.message, entry.sinceLastLog))
                entries[reason]?.sinceLastLog = 0
                entries[reason]?.lastLoggedAt = time
            }
            return due
        }
        for (reason, message, count) in due {
            logger.warning(message, metadata: ["reason": "\(reason)", "count": "\(count)"])
        }
    }

    /// Totals per reason.
    public var totals: [String: Int] { entries.withLock { $0.mapValues(\.total) } }
}
