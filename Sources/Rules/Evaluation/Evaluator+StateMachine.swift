import FileFormats

extension Evaluator {

    /// Moves one instance through its phases at `time`: transitions, schedules its timer, notes the change.
    mutating func step(slot: Int, at time: Int64, into events: inout [EvaluationEvent]) {
        let core = ruleSet.cores[Int(instances[slot].rule)]
        guard !core.usesClock else {
            stepClocked(slot: slot, core: core, at: time, into: &events)
            return
        }
        let phaseBefore = instances[slot].phase
        let transitionBefore = instances[slot].lastTransitionAt
        var gate = ClockGate()
        if let kind = Evaluator.decide(&instances[slot], core: core, at: time, gate: &gate) {
            transition(slot: slot, to: kind, at: time, into: &events)
        }
        scheduleTimer(slot: slot, core: core)
        if effects.tracksChanges,
            instances[slot].phase != phaseBefore || instances[slot].lastTransitionAt != transitionBefore
        {
            effects.changed.append(Int32(slot))
        }
    }

    /// The transition an instance wants at `time`, if any; it enters or leaves `pending` on the way. `gate`
    /// brings the schedule and `keep_firing_for` in (a rule without them passes the default).
    static func decide(
        _ instance: inout Instance,
        core: RuleCore,
        at time: Int64,
        gate: inout ClockGate
    ) -> TransitionKind? {
        instance.isDeferred = false
        var wantsFiring = instance.stale || instance.holds
        // Outside its schedule a rule's condition counts as false (a firing one may hold on, `outside_active`).
        if !gate.isActive, !(instance.isFiring && gate.outsideActiveHolds) {
            gate.endedBySchedule = wantsFiring || instance.isFiring
            wantsFiring = false
        }
        switch instance.phase {
        case .inactive:
            guard wantsFiring else { return nil }
            if instance.stale || core.forMilliseconds == 0 { return .fire }
            // `for` counts from when the condition started holding, or from the schedule's start.
            let since = max(instance.holdsSince ?? time, gate.activeSince)
            instance.phase = .pending(since: since)
            return time >= since + core.forMilliseconds ? .fire : nil
        case .pending(let since):
            guard wantsFiring else {
                instance.phase = .inactive
                return nil
            }
            return instance.stale || time >= since + core.forMilliseconds ? .fire : nil
        case .firing:
            if wantsFiring {
                gate.notHoldingSince = nil
                return nil
            }
            // `keep_firing_for`: clear only once the condition has not held that long without a break (a
            // schedule's end is not waited for).
            if gate.keepFiringFor > 0, !gate.endedBySchedule {
                let since = gate.notHoldingSince ?? time
                gate.notHoldingSince = since
                if time < since + gate.keepFiringFor {
                    gate.wake = min(gate.wake ?? .max, since + gate.keepFiringFor)
                    return nil
                }
                gate.keptFiring = true
            }
            return .clear
        }
    }

    static func earliestTransition(
        _ instance: Instance,
        recentTransitions: [Int64],
        core: RuleCore,
        to kind: TransitionKind
    ) -> (Int64, flapping: Bool) {
        guard let last = instance.lastTransitionAt else { return (.min, false) }
        var earliest = last + core.cooldownMilliseconds
        switch kind {
        case .fire: earliest = max(earliest, last + core.minOffMilliseconds)
        case .clear: earliest = max(earliest, last + core.minOnMilliseconds)
        }
        if let limit = core.maxTransitions, recentTransitions.count >= limit.count {
            let windowOpens = recentTransitions[recentTransitions.count - limit.count] + limit.windowMilliseconds
            if windowOpens > earliest { return (windowOpens, true) }
        }
        return (earliest, false)
    }

    /// Which setting holds a transition back: the one whose end is the latest.
    static func hold(of instance: Instance, core: RuleCore, to kind: TransitionKind, maxTransitions: Bool) -> String {
        guard !maxTransitions else { return "max_transitions" }
        let minimum = kind == .fire ? core.minOffMilliseconds : core.minOnMilliseconds
        return minimum > core.cooldownMilliseconds ? (kind == .fire ? "min_off" : "min_on") : "cooldown"
    }

    /// Makes the transition when cooldown, min_on/min_off and max_transitions allow it; defers it otherwise.
    mutating func transition(
        slot: Int,
        to kind: TransitionKind,
        at time: Int64,
        cause: String? = nil,
        into events: inout [EvaluationEvent]
    ) {
        var instance = instances[slot]
        defer { instances[slot] = instance }
        let core = ruleSet.cores[Int(instance.rule)]
        let (earliest, flapping) = Evaluator.earliestTransition(
            instance,
            recentTransitions: core.maxTransitions == nil ? [] : recentTransitions[Int32(slot), default: []],
            core: core,
            to: kind
        )
        guard time >= earliest else {
            // Said once per hold: a hold ends with a transition, which moves `earliest`.
            if deferrals[Int32(slot)] != earliest {
                let rule = ruleSet.rules[Int(instance.rule)]
                events.append(
                    .transitionHeld(
                        ruleID: rule.id,
                        labels: Evaluator.labels(of: instance, rule: rule),
                        timestamp: time,
                        transition: kind,
                        heldBy: Evaluator.hold(of: instance, core: core, to: kind, maxTransitions: flapping),
                        until: earliest
                    )
                )
            }
            instance.isDeferred = true
            deferrals[Int32(slot)] = earliest
            if flapping && !instance.limited {
                instance.limited = true
                let rule = ruleSet.rules[Int(instance.rule)]
                events.append(
                    .transitionsLimited(
                        ruleID: rule.id,
                        labels: Evaluator.labels(of: instance, rule: rule),
                        timestamp: time,
                        until: earliest
                    )
                )
            }
            return
        }
        let rule = ruleSet.rules[Int(instance.rule)]
        instance.limited = false
        instance.lastTransitionAt = time
        if let limit = core.maxTransitions {
            var times = recentTransitions[Int32(slot), default: []]
            times.append(time)
            if times.count > limit.count { times.removeFirst() }
            recentTransitions[Int32(slot)] = times
        }
        // A single condition has no leaves to report (and the call would copy the evaluator for nothing).
        let conditions = core.isSingleCondition ? [] : conditionReports(ofInstance: slot, at: time)
        var reason =
            core.isSingleCondition
            ? Evaluator.reasonText(instance, problem: lastProblems[Int32(slot)], rule: rule, kind: kind)
            : combinedReason(rule: rule, conditions: conditions, kind: kind, time: time)
        if let cause { reason = "\(cause): \(reason)" }
        lastReasons[Int32(slot)] = reason
        instance.phase = kind == .fire ? .firing(since: time) : .inactive
        if kind == .clear, core.isSingleCondition {
            // Re-evaluate the last value against the fire threshold now that the instance is inactive.
            if let value = instance.lastValue, !instance.stale {
                if let window = ruleSet.windows[Int(instance.rule)][0], case .number(let number) = value {
                    instance.holds = core.condition.holds(windowValue: number, window: window, latched: false)
                } else {
                    instance.holds = core.condition.holds(
                        value,
                        expected: ruleSet.equalsValues[Int(instance.rule)][0],
                        latched: false
                    )
                }
                instance.holdsSince = instance.holds ? time : nil
            }
        }
        let labels = Evaluator.labels(of: instance, rule: rule)
        let record = TransitionRecord(
            timestamp: time,
            ruleID: rule.id,
            transition: kind,
            labels: labels,
            severity: rule.severity,
            reason: reason,
            value: instance.lastValue,
            readingTimestamp: instance.stale ? nil : instance.lastReadingAt,
            conditions: conditions
        )
        events.append(.transition(record))
        for action in kind == .fire ? rule.onFire : rule.onClear {
            events.append(
                .action(
                    FiredAction(
                        decision: record,
                        action: Evaluator.render(
                            action,
                            rule: rule,
                            labels: labels,
                            value: instance.lastValue,
                            kind: kind,
                            reason: reason,
                            time: time,
                            conditions: conditions
                        )
                    )
                )
            )
        }
    }

    /// Sets an instance's one timer to its earliest deadline (`wake` adds a clocked rule's: a window's expiry,
    /// a schedule boundary, the end of `keep_firing_for`).
    mutating func scheduleTimer(slot: Int, core: RuleCore, wake: Int64? = nil) {
        let deferredUntil = instances[slot].isDeferred ? deferrals[Int32(slot)] : nil
        Evaluator.schedule(
            &instances[slot],
            slot: Int32(slot),
            core: core,
            deferredUntil: deferredUntil,
            timers: &effects.timers,
            wake: wake
        )
    }

    static func schedule(
        _ instance: inout Instance,
        slot: Int32,
        core: RuleCore,
        deferredUntil: Int64?,
        timers: inout TimerHeap,
        wake: Int64?
    ) {
        var due = deferredUntil
        if let wake { due = min(due ?? .max, wake) }
        if case .pending(let since) = instance.phase {
            due = min(due ?? .max, since + core.forMilliseconds)
        }
        if !core.isSingleCondition {
            if let deadline = instance.conditionDeadline { due = min(due ?? .max, deadline) }
        } else if let stale = core.staleMilliseconds, let last = instance.staleSince, !instance.stale {
            due = min(due ?? .max, last + stale)
        }
        guard due != instance.timerDue else { return }
        instance.timerDue = due
        instance.timerGeneration &+= 1
        if let due {
            timers.push(
                TimerHeap.Entry(due: due, rule: instance.rule, slot: slot, generation: instance.timerGeneration)
            )
        }
    }
}
