import FileFormats

// Rules that use the clock beyond `for`, `cooldown` and `stale`: windows (a condition on the value of the
// readings of the last minutes or the last N readings), schedules (`active:`), `keep_firing_for` and flap
// detection. Their state lives beside the instances, so rules without them pay nothing for it.

extension Evaluator {
    /// What the clocked step tells `decide` (the schedule, `keep_firing_for`'s wait) and learns from it.
    struct ClockGate {
        /// Whether the rule's schedule is active (true without one), and since when.
        var isActive = true
        var activeSince = Int64.min
        var outsideActiveHolds = false
        /// `keep_firing_for` (0: none).
        var keepFiringFor: Int64 = 0
        /// Since when a firing instance's condition has not held (`keep_firing_for` counts from it).
        var notHoldingSince: Int64?
        /// The earliest clock event the instance must be stepped at (a schedule boundary, the end of a wait).
        var wake: Int64?
        /// Set by `decide`: the condition counts as false because the schedule is not active.
        var endedBySchedule = false
        /// Set by `decide`: the clear waited for `keep_firing_for`.
        var keptFiring = false
    }

    /// The state of one instance of a rule that uses `keep_firing_for` or `flapping:`.
    struct ClockState: Sendable, Hashable {
        var notHoldingSince: Int64?
        /// The condition's recent results, the newest in bit 0, and how many there are (up to 64).
        var flapHistory: UInt64 = 0
        var flapSamples = 0
        var isFlapping = false
        var flapPercent = 0.0
        var lastSampledAt = Int64.min

        /// Records one result and returns the weighted percentage of changes among the last `history`
        /// results: the newest change weighs 1.2, the oldest 0.8 (Nagios), and a history not yet full counts
        /// its missing results as unchanged.
        mutating func recordFlapSample(_ result: Bool, history: Int) -> Double {
            flapHistory = flapHistory << 1 | (result ? 1 : 0)
            flapSamples = min(flapSamples + 1, history)
            guard flapSamples >= 2, history >= 3 else { return 0 }
            var weighted = 0.0
            for position in 0..<(flapSamples - 1)
            where (flapHistory >> position ^ flapHistory >> (position + 1)) & 1 == 1 {
                weighted += 1.2 - 0.4 * Double(position) / Double(history - 2)
            }
            flapPercent = weighted / Double(history - 1) * 100
            return flapPercent
        }
    }

    /// Whether the rule's schedule is active at `time` and for how long (cached per rule until it changes).
    mutating func scheduleSpan(rule: Int, at time: Int64) -> Rule.Schedule.Span? {
        guard let schedule = ruleSet.schedules[rule] else { return nil }
        if let span = scheduleSpans[Int32(rule)], span.contains(time) { return span }
        let span = schedule.span(at: time)
        scheduleSpans[Int32(rule)] = span
        return span
    }

    /// `step` for a rule that uses the clock: the schedule gates the condition, `keep_firing_for` delays a
    /// clear, flap detection samples the condition and may hold the instance; the timer covers the earliest
    /// of all its deadlines.
    mutating func stepClocked(slot: Int, core: RuleCore, at time: Int64, into events: inout [EvaluationEvent]) {
        let ruleIndex = Int(instances[slot].rule)
        let phaseBefore = instances[slot].phase
        let transitionBefore = instances[slot].lastTransitionAt
        let settings = ruleSet.clockSettings[ruleIndex]
        // Only `keep_firing_for` and flap detection keep per-instance clock state (windows and schedules don't).
        let keepsClockState = settings.flapping != nil || settings.keepFiringForMilliseconds > 0
        let savedClock = keepsClockState ? clockStates[Int32(slot)] : nil
        var clock = savedClock ?? ClockState()
        var gate = ClockGate(
            outsideActiveHolds: settings.outsideActiveHolds,
            keepFiringFor: settings.keepFiringForMilliseconds,
            notHoldingSince: clock.notHoldingSince
        )
        if let span = scheduleSpan(rule: ruleIndex, at: time) {
            gate.isActive = span.isActive
            gate.activeSince = span.isActive ? span.since : .min
            gate.wake = span.until
        }
        if let detection = settings.flapping, instances[slot].lastReadingAt == time, clock.lastSampledAt != time {
            clock.lastSampledAt = time
            let result = (instances[slot].stale || instances[slot].holds) && gate.isActive
            let percent = clock.recordFlapSample(result, history: detection.history)
            if clock.isFlapping ? percent < detection.lowPercent : percent >= detection.highPercent {
                clock.isFlapping.toggle()
                let rule = ruleSet.rules[ruleIndex]
                events.append(
                    .flapping(
                        ruleID: rule.id,
                        labels: Evaluator.labels(of: instances[slot], rule: rule),
                        timestamp: time,
                        isFlapping: clock.isFlapping,
                        percent: percent
                    )
                )
            }
        }
        var kind: TransitionKind?
        var cause: String?
        if clock.isFlapping, let detection = settings.flapping {
            // Held in the state the rule names until the flapping stops.
            instances[slot].isDeferred = false
            let firing = instances[slot].isFiring
            switch detection.state {
            case .hold: break
            case .fire: kind = firing ? nil : .fire
            case .clear:
                kind = firing ? .clear : nil
                if case .pending = instances[slot].phase { instances[slot].phase = .inactive }
            }
            cause = "flapping (\(JSONValue.format(clock.flapPercent.rounded())) % of its last results changed)"
        } else {
            kind = Evaluator.decide(&instances[slot], core: core, at: time, gate: &gate)
            if gate.endedBySchedule, kind == .clear, let schedule = ruleSet.schedules[ruleIndex] {
                cause = "outside its schedule (active \(schedule))"
            } else if gate.keptFiring {
                cause = "kept firing for \(RuleDuration.format(settings.keepFiringForMilliseconds))"
            }
        }
        clock.notHoldingSince = gate.notHoldingSince
        if let kind {
            transition(slot: slot, to: kind, at: time, cause: cause, into: &events)
            if !instances[slot].isFiring { clock.notHoldingSince = nil }
        }
        var wake = gate.wake
        if core.isSingleCondition, let window = ruleSet.windows[ruleIndex][0],
            let expiry = instanceWindows[Int32(slot)]?.nextExpiry(of: window)
        {
            wake = min(wake ?? .max, expiry)
        }
        scheduleTimer(slot: slot, core: core, wake: wake)
        if keepsClockState, clock != savedClock ?? ClockState() { clockStates[Int32(slot)] = clock }
        if effects.tracksChanges,
            instances[slot].phase != phaseBefore || instances[slot].lastTransitionAt != transitionBefore
                || clock.notHoldingSince != nil
        {
            effects.changed.append(Int32(slot))
        }
    }

    /// Applies one reading to a single-condition rule with a window: a usable one enters the window, an
    /// unusable one is reported and left out (the window's value stands).
    mutating func evaluateWindowed(
        topic: String,
        target: RouteTarget,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) {
        let ruleIndex = Int(target.rule)
        let slot = Int(target.slot)
        let core = ruleSet.cores[ruleIndex].condition
        switch Evaluator.check(fieldValues[Int(target.field) + 1], core: core) {
        case .success(let value):
            if let window = ruleSet.windows[ruleIndex][0],
                let sample = core.windowSample(value, expected: ruleSet.equalsValues[ruleIndex][0], window: window)
            {
                instanceWindows[target.slot, default: WindowState()].insert(
                    WindowState.Sample(time: time, value: sample),
                    window: window,
                    maxSamples: ruleSet.rules[ruleIndex].leaves[0].maxSamples
                )
            }
            instances[slot].lastReadingAt = time
            instances[slot].staleSince = time
            instances[slot].stale = false
            lastProblems[target.slot] = nil
            // `--state-dir` journals the window with every reading that enters it.
            if effects.tracksChanges { effects.changed.append(target.slot) }
        case .failure(let found):
            let problem = report(found, field: core.fieldIndex, rule: ruleIndex, topic: topic, at: time, into: &events)
            lastProblems[target.slot] = problem
            if instances[slot].staleSince == nil { instances[slot].staleSince = time }
        }
        refreshWindow(instance: slot, at: time)
        step(slot: slot, at: time, into: &events)
    }

    /// Recomputes a single-condition instance's window at `time` (readings age out): the instance holds when
    /// the window's value meets the condition; an unknown value goes through `on_unknown`.
    mutating func refreshWindow(instance slot: Int, at time: Int64) {
        let core = ruleSet.cores[Int(instances[slot].rule)]
        guard let window = ruleSet.windows[Int(instances[slot].rule)][0] else { return }
        // One in-place access (`default:`): the optional subscript's modify allocated its frame per call.
        guard let value = instanceWindows[Int32(slot), default: WindowState()].value(at: time, of: window) else {
            switch core.onUnknown {
            case .keep: break
            case .fire:
                instances[slot].holds = true
                if instances[slot].holdsSince == nil { instances[slot].holdsSince = time }
            case .clear:
                instances[slot].holds = false
                instances[slot].holdsSince = nil
            }
            return
        }
        let holds = core.condition.holds(windowValue: value, window: window, latched: instances[slot].isFiring)
        instances[slot].lastValue = .number(value)
        instances[slot].holds = holds
        if !holds {
            instances[slot].holdsSince = nil
        } else if instances[slot].holdsSince == nil {
            instances[slot].holdsSince = time
        }
    }

    /// Applies one reading to a leaf or member with a window (see `evaluateWindowed`).
    mutating func evaluateWindowedCondition(
        topic: String,
        target: RouteTarget,
        at time: Int64,
        into events: inout [EvaluationEvent]
    ) {
        let state = Int(target.slot)
        let (rule, leaf) = (Int(target.rule), Int(target.leaf))
        let core = ruleSet.conditionCores[rule][leaf]
        switch Evaluator.check(fieldValues[Int(target.field) + 1], core: core) {
        case .success(let value):
            if let window = ruleSet.windows[rule][leaf],
                let sample = core.windowSample(value, expected: ruleSet.equalsValues[rule][leaf], window: window)
            {
                conditionWindows[target.slot, default: WindowState()].insert(
                    WindowState.Sample(time: time, value: sample),
                    window: window,
                    maxSamples: ruleSet.rules[rule].leaves[leaf].maxSamples
                )
            }
            conditions[state].storedFreshSince = time
            conditions[state].storedLastReadingAt = time
            conditionProblems[target.slot] = nil
            let owner = conditions[state].owner
            if owner >= 0 {
                noteWindowReading(instance: owner, at: time)
            } else {
                for reader in sharedReaders[target.slot] ?? [] { noteWindowReading(instance: reader, at: time) }
            }
        case .failure(let found):
            let problem = report(found, field: core.fieldIndex, rule: rule, topic: topic, at: time, into: &events)
            conditions[state].lastReadingAt = time
            conditionProblems[target.slot] = problem
        }
        refreshWindow(condition: state, at: time)
        evaluatedConditions.append(target.slot)
    }

    /// An instance one of whose windows took in a reading: its last reading time, and the journal (`--state-dir`
    /// saves the window with every reading that enters it).
    private mutating func noteWindowReading(instance slot: Int32, at time: Int64) {
        instances[Int(slot)].storedLastReadingAt = time
        if effects.tracksChanges { effects.changed.append(slot) }
    }

    /// Recomputes a leaf's or member's window at `time`: it is usable while the window's value is known, and
    /// latches on it with the leaf's hysteresis. (A leaf that never had a reading has an empty window: `count`
    /// is 0 there, the others unknown.)
    mutating func refreshWindow(condition state: Int, at time: Int64) {
        let (rule, leaf) = (Int(conditions[state].rule), Int(conditions[state].leaf))
        guard let window = ruleSet.windows[rule][leaf] else { return }
        let core = ruleSet.conditionCores[rule][leaf]
        guard let value = conditionWindows[Int32(state), default: WindowState()].value(at: time, of: window) else {
            conditions[state].usable = false
            return
        }
        conditions[state].latched = core.holds(windowValue: value, window: window, latched: conditions[state].latched)
        conditions[state].usable = true
        conditions[state].lastValue = .number(value)
        let owner = conditions[state].owner
        if owner >= 0 { instances[Int(owner)].lastValue = .number(value) }
    }

    /// The window of an instance (single condition) or of a condition slot, for reports.
    func windowReport(window: Rule.Window?, state: WindowState?, at time: Int64) -> WindowReport? {
        guard let window else { return nil }
        var current = state ?? WindowState()
        current.expire(at: time, window: window)
        let value = current.value(of: window)
        return WindowReport(
            window: window.description,
            value: value,
            samples: current.samples.count,
            droppedSamples: current.droppedSamples,
            unknownBecause: value == nil ? current.unknownReason(of: window) : nil
        )
    }
}

/// A window's current value as people see it in `explain`, `/api/instances` and `test`.
public struct WindowReport: Sendable, Hashable {
    /// The window as written: `avg 5m`, `at_least 3 of 5`.
    public var window: String
    /// Its value now (the count of matching readings for `at_least`); nil while unknown.
    public var value: Double?
    /// How many readings it holds.
    public var samples: Int
    /// Readings dropped because it reached `max_samples`.
    public var droppedSamples: Int
    public var unknownBecause: String?

    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("window", .string(window)),
            ("value", value.map(JSONValue.number) ?? .null),
            ("samples", .number(Double(samples))),
        ]
        if droppedSamples > 0 { pairs.append(("dropped_samples", .number(Double(droppedSamples)))) }
        if let unknownBecause { pairs.append(("unknown_because", .string(unknownBecause))) }
        return .object(pairs)
    }

    /// `avg 5m = 31.2 (12 readings)`.
    public var summary: String {
        let valueText = value.map { Evaluator.readable($0) } ?? "unknown (\(unknownBecause ?? ""))"
        return "\(window) = \(valueText) (\(samples) reading\(samples == 1 ? "" : "s"))"
    }
}
