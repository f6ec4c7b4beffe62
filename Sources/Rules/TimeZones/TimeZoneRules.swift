/// One IANA time zone's offsets from UTC over time, read from the zone database's TZif data (RFC 8536).
///
/// The rules core takes the bytes as data (the caller reads `/usr/share/zoneinfo/NAME`), so evaluation stays
/// free of files; times past the file's last transition follow its POSIX TZ footer, as the C library does.
public struct TimeZoneRules: Hashable, Sendable, CustomStringConvertible {
    /// The IANA name (`Europe/Berlin`).
    public let name: String
    /// UTC seconds at which the offset changes, ascending, and the offset (seconds east of UTC) from each on.
    let transitions: [Int64]
    let offsets: [Int32]
    /// The offset before the first transition.
    let initialOffset: Int32
    /// The rule for times after the last transition.
    let footer: PosixRule?

    /// UTC: no transitions.
    public static let utc = TimeZoneRules(name: "UTC", transitions: [], offsets: [], initialOffset: 0, footer: nil)

    init(name: String, transitions: [Int64], offsets: [Int32], initialOffset: Int32, footer: PosixRule?) {
        self.name = name
        self.transitions = transitions
        self.offsets = offsets
        self.initialOffset = initialOffset
        self.footer = footer
    }

    public var description: String { name }

    // Two zones with the same name are the same zone for a rule's definition (the database's version is
    // not part of what the rule says).
    public static func == (lhs: TimeZoneRules, rhs: TimeZoneRules) -> Bool { lhs.name == rhs.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    /// Reads TZif data (version 1 to 4); nil when it is not a valid zone file.
    public init?(name: String, tzif bytes: [UInt8]) {
        var reader = ByteReader(bytes: bytes)
        guard let header = reader.header() else { return nil }
        var counts = header.counts
        var timeSize = 4
        if header.version >= 2 {
            // Skip the 32-bit block; the 64-bit one follows with its own header.
            guard reader.skip(counts.dataSize(timeSize: 4)), let second = reader.header() else { return nil }
            counts = second.counts
            timeSize = 8
        }
        guard let times = reader.integers(count: counts.times, size: timeSize),
            let indexes = reader.bytes(count: counts.times),
            let typeBytes = reader.bytes(count: counts.types * 6),
            counts.types > 0
        else { return nil }
        let types = Array(typeBytes)
        let typeOffsets = (0..<counts.types).map { type in
            Int32(bitPattern: types[type * 6..<type * 6 + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        }
        guard indexes.allSatisfy({ Int($0) < counts.types }) else { return nil }
        var footer: PosixRule?
        if header.version >= 2,
            reader.skip(counts.characters + counts.leaps * (timeSize + 4) + counts.standardFlags + counts.utFlags),
            let text = reader.footer()
        {
            footer = PosixRule(parsing: text)
        }
        self.init(
            name: name,
            transitions: times,
            offsets: indexes.map { typeOffsets[Int($0)] },
            initialOffset: typeOffsets[0],
            footer: footer
        )
    }

    /// The offset from UTC, in seconds, at `seconds` since the epoch (UTC).
    public func offset(atUTC seconds: Int64) -> Int32 {
        guard let last = transitions.last else { return footer?.offset(atUTC: seconds) ?? initialOffset }
        if seconds >= last, let footer { return footer.offset(atUTC: seconds) }
        guard seconds >= transitions[0] else { return initialOffset }
        // The last transition at or before `seconds`.
        var low = 0
        var high = transitions.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if transitions[middle] <= seconds { low = middle } else { high = middle - 1 }
        }
        return offsets[low]
    }

    /// The first UTC instant (milliseconds) whose local time is `local` (milliseconds since the epoch as if
    /// local time were UTC): the first of two when the clock goes back over it; the first instant after the
    /// gap when the clock skips it.
    public func firstInstant(atLocal local: Int64) -> Int64 {
        let seconds = floorDivide(local, 1000)
        // The offsets that apply within a day either side are the candidates.
        let candidates = Set([offset(atUTC: seconds - 86_400), offset(atUTC: seconds), offset(atUTC: seconds + 86_400)])
        var best: Int64?
        for candidate in candidates {
            let instant = local - Int64(candidate) * 1000
            if offset(atUTC: floorDivide(instant, 1000)) == candidate { best = min(best ?? .max, instant) }
        }
        if let best { return best }
        // In a gap: the moment the clock jumped, i.e. the earliest instant whose local time is later.
        var low = local - 86_400_000
        var high = local + 86_400_000
        while high - low > 1 {
            let middle = low + (high - low) / 2
            if middle + Int64(offset(atUTC: floorDivide(middle, 1000))) * 1000 >= local {
                high = middle
            } else {
                low = middle
            }
        }
        return high
    }
}

/// A POSIX TZ string's rule (`CET-1CEST,M3.5.0,M10.5.0/3`): a standard offset and, optionally, a
/// daylight-saving offset between two yearly moments of the `Mm.w.d[/time]` form.
struct PosixRule: Hashable, Sendable {
    struct Moment: Hashable, Sendable {
        var month: Int
        var week: Int
        var weekday: Int
        /// Seconds after local midnight (may be negative or past 24 h).
        var time: Int64
    }
    /// Seconds east of UTC.
    var standardOffset: Int32
    var daylight: (offset: Int32, start: Moment, end: Moment)?

    static func == (lhs: PosixRule, rhs: PosixRule) -> Bool {
        lhs.standardOffset == rhs.standardOffset && lhs.daylight?.offset == rhs.daylight?.offset
            && lhs.daylight?.start == rhs.daylight?.start && lhs.daylight?.end == rhs.daylight?.end
    }
    func hash(into hasher: inout Hasher) { hasher.combine(standardOffset) }

    init?(parsing text: String) {
        var scanner = Substring(text)
        guard PosixRule.skipName(&scanner), let standard = PosixRule.offset(&scanner) else { return nil }
        standardOffset = -standard
        guard !scanner.isEmpty else {
            daylight = nil
            return
        }
        guard PosixRule.skipName(&scanner) else { return nil }
        var daylightOffset = standardOffset + 3600
        if let first = scanner.first, first != "," {
            guard let value = PosixRule.offset(&scanner) else { return nil }
            daylightOffset = -value
        }
        guard scanner.first == "," else { return nil }
        scanner.removeFirst()
        guard let start = PosixRule.moment(&scanner), scanner.first == "," else { return nil }
        scanner.removeFirst()
        guard let end = PosixRule.moment(&scanner), scanner.isEmpty else { return nil }
        daylight = (daylightOffset, start, end)
    }

    func offset(atUTC seconds: Int64) -> Int32 {
        guard let daylight else { return standardOffset }
        let year = CivilDate(daysSinceEpoch: floorDivide(seconds + Int64(standardOffset), 86_400)).year
        // Transitions are stated in the local time in force before them.
        let start = daylight.start.instant(year: year) - Int64(standardOffset)
        let end = daylight.end.instant(year: year) - Int64(daylight.offset)
        let inDaylight = start < end ? seconds >= start && seconds < end : !(seconds >= end && seconds < start)
        return inDaylight ? daylight.offset : standardOffset
    }

    private static func skipName(_ text: inout Substring) -> Bool {
        if text.first == "<" {
            guard let close = text.firstIndex(of: ">") else { return false }
            text = text[text.index(after: close)...]
            return true
        }
        let name = text.prefix { $0.isLetter }
        guard name.count >= 3 else { return false }
        text = text.dropFirst(name.count)
        return true
    }

    /// `[+-]hh[:mm[:ss]]` in seconds (POSIX: positive west of Greenwich).
    private static func offset(_ text: inout Substring) -> Int32? {
        var sign: Int32 = 1
        if text.first == "+" || text.first == "-" {
            if text.removeFirst() == "-" { sign = -1 }
        }
        guard let seconds = clock(&text) else { return nil }
        return sign * Int32(seconds)
    }

    private static func clock(_ text: inout Substring) -> Int64? {
        var parts: [Int64] = []
        repeat {
            if !parts.isEmpty { text.removeFirst() }
            let digits = text.prefix { $0.isNumber }
            guard !digits.isEmpty, let value = Int64(digits) else { return nil }
            parts.append(value)
            text = text.dropFirst(digits.count)
        } while text.first == ":" && parts.count < 3
        return parts.enumerated().reduce(0) { $0 + $1.element * [3600, 60, 1][$1.offset] }
    }

    private static func moment(_ text: inout Substring) -> Moment? {
        guard text.first == "M" else { return nil }
        text.removeFirst()
        let fields = text.prefix { $0.isNumber || $0 == "." }.split(separator: ".").compactMap { Int($0) }
        guard fields.count == 3, (1...12).contains(fields[0]), (1...5).contains(fields[1]), (0...6).contains(fields[2])
        else { return nil }
        text = text.drop { $0.isNumber || $0 == "." }
        var time: Int64 = 7200
        if text.first == "/" {
            text.removeFirst()
            var sign: Int64 = 1
            if text.first == "-" || text.first == "+" { if text.removeFirst() == "-" { sign = -1 } }
            guard let value = clock(&text) else { return nil }
            time = sign * value
        }
        return Moment(month: fields[0], week: fields[1], weekday: fields[2], time: time)
    }
}

extension PosixRule.Moment {
    /// Local seconds (as if local time were UTC) of this moment in `year`.
    func instant(year: Int64) -> Int64 {
        let first = CivilDate(year: year, month: month, day: 1).daysSinceEpoch
        // 1970-01-01 was a Thursday (weekday 4, Sunday = 0).
        let firstWeekday = Int((first % 7 + 7 + 4) % 7)
        var day = 1 + (weekday - firstWeekday + 7) % 7 + (week - 1) * 7
        let length = CivilDate.daysIn(month: month, year: year)
        while day > length { day -= 7 }
        return (first + Int64(day - 1)) * 86_400 + time
    }
}

/// A proleptic Gregorian date, converted to and from days since 1970-01-01 (Howard Hinnant's algorithms).
struct CivilDate: Hashable, Sendable {
    var year: Int64
    var month: Int
    var day: Int

    init(year: Int64, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    init(daysSinceEpoch days: Int64) {
        let shifted = days + 719_468
        let era = floorDivide(shifted, 146_097)
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        day = Int(dayOfYear - (153 * shiftedMonth + 2) / 5 + 1)
        month = Int(shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9)
        year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    }

    var daysSinceEpoch: Int64 {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = floorDivide(shiftedYear, 400)
        let yearOfEra = shiftedYear - era * 400
        let shiftedMonth = Int64(month > 2 ? month - 3 : month + 9)
        let dayOfYear = (153 * shiftedMonth + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// Monday = 0 … Sunday = 6.
    static func weekday(ofDay days: Int64) -> Int { Int(((days % 7) + 7 + 3) % 7) }

    static func daysIn(month: Int, year: Int64) -> Int {
        switch month {
        case 2: year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

@inline(__always)
func floorDivide(_ value: Int64, _ divisor: Int64) -> Int64 {
    let quotient = value / divisor
    return value % divisor < 0 ? quotient - 1 : quotient
}

/// Reads TZif's big-endian fields.
private struct ByteReader {
    struct Counts {
        var utFlags, standardFlags, leaps, times, types, characters: Int

        func dataSize(timeSize: Int) -> Int {
            times * timeSize + times + types * 6 + characters + leaps * (timeSize + 4) + standardFlags + utFlags
        }
    }

    let bytes: [UInt8]
    var position = 0

    mutating func header() -> (version: Int, counts: Counts)? {
        guard position + 44 <= bytes.count, bytes[position..<position + 4].elementsEqual("TZif".utf8) else {
            return nil
        }
        let versionByte = bytes[position + 4]
        let version = versionByte == 0 ? 1 : Int(versionByte) - Int(UInt8(ascii: "0"))
        position += 20
        guard let values = integers(count: 6, size: 4), values.allSatisfy({ $0 >= 0 && $0 < 1 << 20 }) else {
            return nil
        }
        let counts = values.map(Int.init)
        return (
            version,
            Counts(
                utFlags: counts[0],
                standardFlags: counts[1],
                leaps: counts[2],
                times: counts[3],
                types: counts[4],
                characters: counts[5]
            )
        )
    }

    mutating func skip(_ count: Int) -> Bool {
        guard position + count <= bytes.count else { return false }
        position += count
        return true
    }

    mutating func bytes(count: Int) -> ArraySlice<UInt8>? {
        guard position + count <= bytes.count else { return nil }
        defer { position += count }
        return bytes[position..<position + count]
    }

    mutating func integers(count: Int, size: Int) -> [Int64]? {
        guard let raw = bytes(count: count * size) else { return nil }
        return (0..<count).map { index in
            let start = raw.startIndex + index * size
            let unsigned = raw[start..<start + size].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return size == 4 ? Int64(Int32(truncatingIfNeeded: unsigned)) : Int64(bitPattern: unsigned)
        }
    }

    mutating func footer() -> String? {
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\n") else { return nil }
        let rest = bytes[(position + 1)...]
        guard let end = rest.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let text = String(decoding: rest[..<end], as: UTF8.self)
        return text.isEmpty ? nil : text
    }
}

/// Where the rule loader finds time zones by IANA name: the system's zone database (read by the caller, see
/// `InputFiles`), or only UTC.
public struct TimeZoneDatabase: Sendable {
    /// Where the zones come from, for error messages.
    public let origin: String
    private let lookup: @Sendable (String) -> TimeZoneRules?

    public init(origin: String, lookup: @escaping @Sendable (String) -> TimeZoneRules?) {
        self.origin = origin
        self.lookup = lookup
    }

    /// Only `UTC` (and `Etc/UTC`).
    public static let utcOnly = TimeZoneDatabase(origin: "only UTC is known here") { _ in nil }

    /// The zone named `name`; `UTC` is always known.
    public func rules(named name: String) -> TimeZoneRules? {
        if name == "UTC" || name == "Etc/UTC" { return TimeZoneRules.utc }
        return lookup(name)
    }
}
