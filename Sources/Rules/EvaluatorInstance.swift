import FileFormats
import HeapModule

// The evaluator's per-instance state and the routes that take a reading to its instances, laid out for
// size and for the hot path (100,000 instances are common).
extension Evaluator {
    struct Instance: Sendable {
        enum Phase: Sendable, Hashable {
            case inactive
            case pending(since: Int64)
            case firing(since: Int64)

            var isFiring: Bool {
                if case .firing = self { return true }
                return false
            }
        }

        // Laid out for size (100,000 instances are common): small fields first, times as Int64 with
        // `Int64.min` for "none" behind optional-typed accessors, the rare last problem in a side table.
        // A field starts right after the previous one's size, so the small ones fill the tail of `phase` and
        // `lastValue` (120 bytes in declaration order by kind, 112 in this order).

        var storedHoldsSince = Int64.min
        var storedLastReadingAt = Int64.min
        var storedStaleSince = Int64.min
        var storedLastTransitionAt = Int64.min
        var storedDeferredUntil = Int64.min
        var storedTimerDue = Int64.min
        var phase = Phase.inactive
        /// Whether the condition holds, from the last usable reading (or the unknown policy).
        var holds = false
        var stale = false
        /// Whether `max_transitions` holds it back (a transition is deferred until its window allows one).
        var limited = false
        /// Index of the rule in the rule set.
        var rule: Int32
        /// `lastValue`, in 9 bytes instead of 17.
        var storedValue = StoredValue.none
        var timerGeneration: UInt32 = 0
        /// The captured values, in the rule's `captureNames` order.
        var labels: [String]
        /// A combined rule's: the state slot of each leaf, in leaf order; a group's: its members' (empty for a
        /// single condition).
        var inputs: [Int32] = []

        /// The last usable reading's value (a window's value for a windowed rule).
        var lastValue: JSONValue? {
            get {
                switch storedValue {
                case .none: nil
                case .number(let number): .number(number)
                case .other(let box): box.value
                }
            }
            set {
                switch newValue {
                case nil: storedValue = .none
                case .number(let number)?: storedValue = .number(number)
                case let value?:
                    // A state string repeats reading after reading: keep the box it is already in.
                    if case .other(let box) = storedValue, box.value == value { return }
                    storedValue = .other(StoredValue.Box(value))
                }
            }
        }

        var holdsSince: Int64? {
            get { Instance.optional(storedHoldsSince) }
            set { storedHoldsSince = newValue ?? .min }
        }
        var lastReadingAt: Int64? {
            get { Instance.optional(storedLastReadingAt) }
            set { storedLastReadingAt = newValue ?? .min }
        }
        /// What `stale` counts from: the last usable reading; before any, the instance's first reading
        /// (a sensor that only ever sent garbage is as broken as a silent one); after a restart, the restart.
        var staleSince: Int64? {
            get { Instance.optional(storedStaleSince) }
            set { storedStaleSince = newValue ?? .min }
        }
        /// A combined or grouped rule's instance: when one of its conditions goes stale next (it has no
        /// `stale` of its own, so this shares the storage).
        var conditionDeadline: Int64? {
            get { Instance.optional(storedStaleSince) }
            set { storedStaleSince = newValue ?? .min }
        }
        var lastTransitionAt: Int64? {
            get { Instance.optional(storedLastTransitionAt) }
            set { storedLastTransitionAt = newValue ?? .min }
        }
        var deferredUntil: Int64? {
            get { Instance.optional(storedDeferredUntil) }
            set { storedDeferredUntil = newValue ?? .min }
        }
        var timerDue: Int64? {
            get { Instance.optional(storedTimerDue) }
            set { storedTimerDue = newValue ?? .min }
        }

        @inline(__always)
        static func optional(_ value: Int64) -> Int64? { value == .min ? nil : value }

        init(rule: Int32, labels: [String]) {
            self.rule = rule
            self.labels = labels
        }

        /// Takes in a usable reading's value.
        mutating func observe(_ value: JSONValue, holds: Bool, at time: Int64) {
            lastValue = value
            lastReadingAt = time
            staleSince = time
            stale = false
            self.holds = holds
            if holds, holdsSince == nil { holdsSince = time }
            if !holds { holdsSince = nil }
        }

        /// Takes in a reading the rule could not use, as the rule's `on_unknown` says (the problem itself
        /// is kept in the evaluator's `lastProblems`).
        mutating func observeUnusable(policy: Rule.UnknownPolicy, at time: Int64) {
            if staleSince == nil { staleSince = time }
            switch policy {
            case .keep: break
            case .fire:
                holds = true
                if holdsSince == nil { holdsSince = time }
            case .clear:
                holds = false
                holdsSince = nil
            }
        }
    }

    /// An instance's last value: a number (almost always) inline, anything else in an immutable box.
    enum StoredValue: Sendable {
        final class Box: Sendable {
            let value: JSONValue
            init(_ value: JSONValue) { self.value = value }
        }

        case none
        case number(Double)
        case other(Box)
    }

    /// What one topic feeds, and the last `seq` its sensor sent.
    struct Route: Sendable {
        var lastSequence: Int64 = .min
        /// nil until resolved against the current rule set.
        var resolution: Resolution?
        /// Added to the slots of the resolution's single-condition targets (0 unless it is shared).
        var slotBase: Int32 = 0
    }

    /// What a resolution holds, to find one that other topics already share.
    struct ResolutionShape: Hashable, Sendable {
        var targets: [RouteTarget]
        var fields: [Int]
        var keyRanges: [Range<Int>]?
    }

    /// The instances a topic feeds under the current rule set and the payload fields they read
    /// (a class: handing it out per reading costs one retain, not one per array).
    final class Resolution: Sendable {
        /// Empty when no rule matches the topic.
        let targets: [RouteTarget]
        /// The distinct fields read (indexes into `RuleSet.fields`); a target's `field` is a position here.
        let fields: [Int]
        /// `seq`'s key range, then each field's, for `PayloadScanner`; nil when a field is a dotted path.
        let keyRanges: [Range<Int>]?

        init(targets: [RouteTarget], fields: [Int], keyRanges: [Range<Int>]?) {
            self.targets = targets
            self.fields = fields
            self.keyRanges = keyRanges
        }
    }

    /// One rule instance a topic feeds, or for a combined or grouped rule one condition state (`leaf` ≥ 0);
    /// `slot` is -1 when a captured value is unsafe (reported per reading).
    struct RouteTarget: Sendable, Hashable {
        var rule: Int32
        var slot: Int32
        /// Position of the rule's field in the route's `fields`.
        var field: Int32
        /// The leaf of a combined or grouped rule whose state `slot` is; -1 for a single condition.
        var leaf: Int32
    }

    /// What the state machine changes besides the instance itself.
    struct Effects: Sendable {
        var timers = TimerHeap()
        /// Slots whose phase or last transition changed, for `takeChangedInstances()`.
        var changed: [Int32] = []
        var tracksChanges = false
    }
}

/// Timers by due time; entries whose generation is outdated are skipped when popped.
struct TimerHeap: Sendable {
    struct Entry: Sendable, Comparable {
        var due: Int64
        var rule: Int32
        var slot: Int32
        var generation: UInt32

        static func < (lhs: Entry, rhs: Entry) -> Bool { lhs.due < rhs.due }
        static func == (lhs: Entry, rhs: Entry) -> Bool { lhs.due == rhs.due }
    }

    var heap = Heap<Entry>()

    func peekDue() -> Int64? { heap.min?.due }

    mutating func push(_ entry: Entry) { heap.insert(entry) }

    mutating func popIfDue(atOrBefore time: Int64) -> Entry? {
        guard let first = heap.min, first.due <= time else { return nil }
        return heap.removeMin()
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[start...end])
    }
}
