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

        // Laid out for size (100,000 instances are common): times as Int64 with `Int64.min` for "none" behind
        // optional-typed accessors; the phase as its start time and two bits of `flags`, beside the booleans; the
        // rare parts (a deferred transition's time, a combined rule's inputs, the last problem) in the
        // evaluator's side tables by slot. A field starts right after the previous one's size, so the small
        // ones fill the tail of the 9-byte `storedValue`: 72 bytes.

        var storedHoldsSince = Int64.min
        var storedLastReadingAt = Int64.min
        var storedStaleSince = Int64.min
        var storedLastTransitionAt = Int64.min
        var storedTimerDue = Int64.min
        /// When the instance became pending or firing (`phase`'s payload).
        var phaseSince: Int64 = 0
        /// The captured values, in the rule's `captureNames` order.
        var labels: [String]
        /// `lastValue`, in 9 bytes instead of 17.
        var storedValue = StoredValue.none
        /// `holds`, `stale`, `limited`, `isDeferred`, and the phase in bits 4 and 5.
        var flags: UInt8 = 0
        /// Tells a timer entry that was replaced from the current one (with its due time; 16 bits suffice:
        /// an outdated entry would also need the current due time to be taken for it).
        var timerGeneration: UInt16 = 0
        /// Index of the rule in the rule set.
        var rule: Int32

        var phase: Phase {
            @inline(__always) get {
                switch flags & Instance.phaseMask {
                case Instance.pendingBits: .pending(since: phaseSince)
                case Instance.firingBits: .firing(since: phaseSince)
                default: .inactive
                }
            }
            @inline(__always) set {
                let bits: UInt8
                switch newValue {
                case .inactive:
                    bits = 0
                    phaseSince = 0
                case .pending(let since):
                    bits = Instance.pendingBits
                    phaseSince = since
                case .firing(let since):
                    bits = Instance.firingBits
                    phaseSince = since
                }
                flags = flags & ~Instance.phaseMask | bits
            }
        }

        /// Whether the phase is `firing`, without building the enum.
        var isFiring: Bool {
            @inline(__always) get { flags & Instance.phaseMask == Instance.firingBits }
        }

        /// Whether the state machine has nothing to do for it: inactive and not wanting to fire, or firing and
        /// wanting to stay, with no timer and no deferred transition.
        var isSettled: Bool {
            @inline(__always) get {
                guard storedTimerDue == .min, !isDeferred else { return false }
                let wantsFiring = flags & (Instance.holdsBit | Instance.staleBit) != 0
                switch flags & Instance.phaseMask {
                case 0: return !wantsFiring
                case Instance.firingBits: return wantsFiring
                default: return false
                }
            }
        }

        /// Whether the condition holds, from the last usable reading (or the unknown policy).
        var holds: Bool {
            @inline(__always) get { flag(Instance.holdsBit) }
            @inline(__always) set { setFlag(Instance.holdsBit, newValue) }
        }
        var stale: Bool {
            @inline(__always) get { flag(Instance.staleBit) }
            @inline(__always) set { setFlag(Instance.staleBit, newValue) }
        }
        /// Whether `max_transitions` holds it back (a transition is deferred until its window allows one).
        var limited: Bool {
            @inline(__always) get { flag(Instance.limitedBit) }
            @inline(__always) set { setFlag(Instance.limitedBit, newValue) }
        }
        /// Whether a transition waits (for `cooldown`, `min_on`, `min_off`, `max_transitions`) until the time
        /// kept in the evaluator's `deferrals`.
        var isDeferred: Bool {
            @inline(__always) get { flag(Instance.deferredBit) }
            @inline(__always) set { setFlag(Instance.deferredBit, newValue) }
        }

        static let holdsBit: UInt8 = 1
        static let staleBit: UInt8 = 2
        static let limitedBit: UInt8 = 4
        static let deferredBit: UInt8 = 8
        static let phaseMask: UInt8 = 0x30
        static let pendingBits: UInt8 = 0x10
        static let firingBits: UInt8 = 0x20

        @inline(__always)
        func flag(_ bit: UInt8) -> Bool { flags & bit != 0 }

        @inline(__always)
        mutating func setFlag(_ bit: UInt8, _ value: Bool) {
            flags = value ? flags | bit : flags & ~bit
        }

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

        /// Takes in a number for a threshold rule; returns whether the state machine has nothing to do after
        /// it (`isSettled`).
        @inline(__always)
        mutating func observe(number: Double, comparison: ConditionCore.Comparison, at time: Int64) -> Bool {
            observe(.number(number), holds: comparison.holds(number: number, firing: isFiring), at: time)
            return isSettled
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
        /// Index into the evaluator's `resolutions`; `unresolved` until resolved against the current rule set.
        var resolution: Int32 = Route.unresolved
        /// Added to the slots of the resolution's single-condition targets (0 unless it is shared).
        var slotBase: Int32 = 0

        static let unresolved: Int32 = -1
    }

    /// What a resolution holds, to find one that other topics already share.
    struct ResolutionShape: Hashable, Sendable {
        var targets: [RouteTarget]
        var fields: [Int]
        var keyRanges: [Range<Int>]?
    }

    /// The instances a topic feeds under the current rule set and the payload fields they read, as ranges of
    /// the evaluator's `resolvedTargets`, `resolvedFields` and `resolvedKeyRanges` (plain integers: nothing to
    /// retain per reading).
    struct Resolution: Sendable {
        /// Empty when no rule matches the topic.
        var targets: Range<Int32>
        /// The distinct fields read (indexes into `RuleSet.fields`); a target's `field` is a position here.
        var fields: Range<Int32>
        /// `seq`'s key range, then each field's, for `PayloadScanner`; nil when a field is a dotted path.
        var keyRanges: Range<Int32>?
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
        var generation: UInt16

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
