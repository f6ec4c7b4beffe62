import FileFormats

extension Rule {
    /// When a rule may fire (`active:`): on some days, between two local times, in one time zone.
    public struct Schedule: Hashable, Sendable, CustomStringConvertible {
        /// The days it starts on: Monday = 0 … Sunday = 6.
        public var days: Set<Int>
        /// Seconds after local midnight; `to` ≤ `from` spans midnight; `to` may be 86,400 (`24:00`).
        public var fromSeconds: Int
        public var toSeconds: Int
        public var zone: TimeZoneRules

        public static let dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

        public init(days: Set<Int>, fromSeconds: Int, toSeconds: Int, zone: TimeZoneRules) {
            self.days = days
            self.fromSeconds = fromSeconds
            self.toSeconds = toSeconds
            self.zone = zone
        }

        /// `mon,tue 08:00-18:00 Europe/Berlin`.
        public var description: String {
            let names = days.sorted().map { Schedule.dayNames[$0] }.joined(separator: ",")
            return "\(names) \(Schedule.clockText(fromSeconds))-\(Schedule.clockText(toSeconds)) \(zone.name)"
        }

        static func clockText(_ seconds: Int) -> String {
            func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
            let text = "\(two(seconds / 3600)):\(two(seconds / 60 % 60))"
            return seconds % 60 == 0 ? text : "\(text):\(two(seconds % 60))"
        }

        /// Whether the schedule is active at `time` (UTC milliseconds), since when and until when that stays so.
        public func span(at time: Int64) -> Span {
            let local = time + Int64(zone.offset(atUTC: floorDivide(time, 1000))) * 1000
            let today = floorDivide(local, 86_400_000)
            var periods: [(start: Int64, end: Int64)] = []
            for day in (today - 2)...(today + 8) where days.contains(CivilDate.weekday(ofDay: day)) {
                let start = zone.firstInstant(atLocal: day * 86_400_000 + Int64(fromSeconds) * 1000)
                let endDay = fromSeconds < toSeconds ? day : day + 1
                let end = zone.firstInstant(atLocal: endDay * 86_400_000 + Int64(toSeconds) * 1000)
                if end > start { periods.append((start, end)) }
            }
            // Merge periods that touch (Monday 22:00–06:00 then Tuesday 06:00–…).
            var merged: [(start: Int64, end: Int64)] = []
            for period in periods.sorted(by: { $0.start < $1.start }) {
                if let last = merged.last, period.start <= last.end {
                    merged[merged.count - 1].end = max(last.end, period.end)
                } else {
                    merged.append(period)
                }
            }
            if let current = merged.first(where: { $0.start <= time && time < $0.end }) {
                return Span(isActive: true, since: current.start, until: current.end)
            }
            let since = merged.last(where: { $0.end <= time })?.end ?? .min
            // Some day of the week starts a period, so one is always found within 8 days; a week on is a safe bound.
            let until = merged.first(where: { $0.start > time })?.start ?? (today + 7) * 86_400_000
            return Span(isActive: false, since: since, until: max(until, time + 1))
        }

        /// A stretch of time over which the schedule is active or not, `since` included, `until` excluded.
        public struct Span: Hashable, Sendable {
            public var isActive: Bool
            public var since: Int64
            public var until: Int64

            public func contains(_ time: Int64) -> Bool { time >= since && time < until }
        }
    }
}
