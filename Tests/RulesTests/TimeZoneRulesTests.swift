import Foundation
import Testing

@testable import Rules

/// Zones read from the system's zone database (Debian's `tzdata`, installed by the test command), pinned to
/// the 2026 transitions.
@Suite struct TimeZoneRulesTests {
    static func zone(_ name: String) throws -> TimeZoneRules {
        let path = "/usr/share/zoneinfo/\(name)"
        let data = try #require(FileManager.default.contents(atPath: path), "\(path) is missing: install tzdata")
        return try #require(TimeZoneRules(name: name, tzif: [UInt8](data)), "\(path) is not TZif")
    }

    /// Seconds since the epoch of a UTC date and time.
    static func utc(_ year: Int64, _ month: Int, _ day: Int, _ hour: Int64, _ minute: Int64 = 0) -> Int64 {
        CivilDate(year: year, month: month, day: day).daysSinceEpoch * 86_400 + hour * 3600 + minute * 60
    }

    struct Transition: Sendable, CustomTestStringConvertible {
        var zone: String
        /// The first second of the new offset (UTC).
        var at: Int64
        var before: Int32
        var after: Int32
        var testDescription: String { "\(zone) at \(at)" }
    }

    @Test(arguments: [
        // EU: last Sunday of March and October at 01:00 UTC.
        Transition(zone: "Europe/Berlin", at: utc(2026, 3, 29, 1), before: 3600, after: 7200),
        Transition(zone: "Europe/Berlin", at: utc(2026, 10, 25, 1), before: 7200, after: 3600),
        Transition(zone: "Europe/London", at: utc(2026, 3, 29, 1), before: 0, after: 3600),
        // US: second Sunday of March and first of November at 02:00 local.
        Transition(zone: "America/New_York", at: utc(2026, 3, 8, 7), before: -18_000, after: -14_400),
        Transition(zone: "America/New_York", at: utc(2026, 11, 1, 6), before: -14_400, after: -18_000),
        // Half-hour offsets: India all year, South Australia with daylight saving.
        Transition(zone: "Asia/Kolkata", at: utc(2026, 6, 1, 0), before: 19_800, after: 19_800),
        Transition(zone: "Australia/Adelaide", at: utc(2026, 4, 4, 16, 30), before: 37_800, after: 34_200),
        Transition(zone: "Australia/Adelaide", at: utc(2026, 10, 3, 16, 30), before: 34_200, after: 37_800),
    ])
    func pinnedTransitions(_ transition: Transition) throws {
        let zone = try Self.zone(transition.zone)
        #expect(zone.offset(atUTC: transition.at - 1) == transition.before)
        #expect(zone.offset(atUTC: transition.at) == transition.after)
    }

    /// A "slim" zone file keeps only the footer's rule: it must give the same offsets as the full file.
    @Test(arguments: ["Europe/Berlin", "America/New_York", "Australia/Adelaide", "Asia/Kolkata"])
    func theFootersRuleAgreesWithTheTransitions(_ name: String) throws {
        let zone = try Self.zone(name)
        let footer = try #require(zone.footer)
        let slim = TimeZoneRules(name: name, transitions: [], offsets: [], initialOffset: 0, footer: footer)
        var time = Self.utc(2026, 1, 1, 0)
        while time < Self.utc(2028, 1, 1, 0) {
            #expect(slim.offset(atUTC: time) == zone.offset(atUTC: time), "\(name) at \(time)")
            time += 1800
        }
    }

    @Test func localTimesInTheGapStartAfterItAndRepeatedOnesAtTheirFirstOccurrence() throws {
        let berlin = try Self.zone("Europe/Berlin")
        // 2026-03-29 02:30 does not exist in Berlin: the first instant after the gap is 03:00 CEST (01:00 UTC).
        let gap = CivilDate(year: 2026, month: 3, day: 29).daysSinceEpoch * 86_400_000 + 9_000_000
        #expect(berlin.firstInstant(atLocal: gap) == Self.utc(2026, 3, 29, 1) * 1000)
        // 2026-10-25 02:30 happens twice: first at 00:30 UTC (CEST).
        let twice = CivilDate(year: 2026, month: 10, day: 25).daysSinceEpoch * 86_400_000 + 9_000_000
        #expect(berlin.firstInstant(atLocal: twice) == Self.utc(2026, 10, 25, 0, 30) * 1000)
    }

    struct ScheduleCase: Sendable, CustomTestStringConvertible {
        var name: String
        var zone: String
        var from: Int
        var to: Int
        /// A moment (UTC seconds) and the span expected there (UTC seconds).
        var at: Int64
        var active: Bool
        var since: Int64
        var until: Int64
        var testDescription: String { name }
    }

    @Test(arguments: [
        ScheduleCase(
            name: "spring forward: 02:30 is skipped, the schedule starts at the first instant after the gap",
            zone: "Europe/Berlin",
            from: 9000,
            to: 14_400,
            at: utc(2026, 3, 29, 1, 10),
            active: true,
            since: utc(2026, 3, 29, 1),
            until: utc(2026, 3, 29, 2)
        ),
        ScheduleCase(
            name: "fall back: 02:30 happens twice, the schedule starts at the first and stays on through the second",
            zone: "Europe/Berlin",
            from: 9000,
            to: 18_000,
            at: utc(2026, 10, 25, 1, 40),
            active: true,
            since: utc(2026, 10, 25, 0, 30),
            until: utc(2026, 10, 25, 4)
        ),
        ScheduleCase(
            name: "New York 08:00 the Monday after the change is 12:00 UTC",
            zone: "America/New_York",
            from: 28_800,
            to: 64_800,
            at: utc(2026, 3, 9, 11, 59),
            active: false,
            since: utc(2026, 3, 8, 22),
            until: utc(2026, 3, 9, 12)
        ),
        ScheduleCase(
            name: "New York 08:00 the Friday before the change is 13:00 UTC",
            zone: "America/New_York",
            from: 28_800,
            to: 64_800,
            at: utc(2026, 3, 6, 13),
            active: true,
            since: utc(2026, 3, 6, 13),
            until: utc(2026, 3, 6, 23)
        ),
        ScheduleCase(
            name: "Kolkata 09:00 is 03:30 UTC",
            zone: "Asia/Kolkata",
            from: 32_400,
            to: 36_000,
            at: utc(2026, 7, 1, 3, 30),
            active: true,
            since: utc(2026, 7, 1, 3, 30),
            until: utc(2026, 7, 1, 4, 30)
        ),
    ])
    func scheduleSpans(_ test: ScheduleCase) throws {
        let schedule = Rule.Schedule(
            days: Set(0..<7),
            fromSeconds: test.from,
            toSeconds: test.to,
            zone: try Self.zone(test.zone)
        )
        let span = schedule.span(at: test.at * 1000)
        #expect(span == Rule.Schedule.Span(isActive: test.active, since: test.since * 1000, until: test.until * 1000))
    }

    @Test func aRuleFollowsItsZoneThroughTheNightTheClocksGoForward() throws {
        let database = TimeZoneDatabase(origin: "test") { name in try? Self.zone(name) }
        let text = ruleFile("above: 30\nactive: {from: \"02:30\", to: \"04:00\", timezone: Europe/Berlin}")
        let rules = try RuleLoader.load([RuleSource(path: "r.yaml", text: text)], zones: database)
        let night = Self.utc(2026, 3, 29, 0) * 1000
        let outcome = Replay.run(
            rules,
            readings: [Reading(topic: "sensors/d1/temperature", payload: "35", timestamp: night)],
            end: night + 3 * 3_600_000
        )
        #expect(
            outcome.transitions.map { "\($0.transition.rawValue)@\($0.timestamp)" } == [
                "fire@\(Self.utc(2026, 3, 29, 1) * 1000)", "clear@\(Self.utc(2026, 3, 29, 2) * 1000)",
            ]
        )
        #expect(outcome.transitions.last?.reason.hasPrefix("outside its schedule") == true)
    }
}
