import FileFormats

/// Recorded readings in JSON lines: `{"ts": <unix ms or RFC 3339>, "topic": "...", "payload": <JSON>}`.
///
/// A string payload is the raw text a device sent (`"open"` is the payload `open`); any other JSON value
/// is the payload as JSON text.
public enum RecordedReadings {
    /// A line that could not be read.
    public struct LineError: Error, CustomStringConvertible, Sendable {
        public var path: String
        public var line: Int
        public var message: String
        public var description: String { "\(path):\(line):1: error: \(message)" }
    }

    /// Parses every line; blank lines and lines starting with `#` are skipped. Throws every bad line.
    public static func parse(_ text: String, path: String) throws(RecordedReadingsError) -> [Reading] {
        var readings: [Reading] = []
        var errors: [LineError] = []
        for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.drop { $0 == " " || $0 == "\t" || $0 == "\r" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            switch parseLine(String(line)) {
            case .success(let reading): readings.append(reading)
            case .failure(let message): errors.append(LineError(path: path, line: offset + 1, message: message.text))
            }
        }
        guard errors.isEmpty else { throw RecordedReadingsError(lines: errors) }
        return readings
    }

    struct Message: Error {
        var text: String
    }

    static func parseLine(_ line: String) -> Result<Reading, Message> {
        guard let json = JSONValue(parsing: line), case .object = json else {
            return .failure(Message(text: "not a JSON object"))
        }
        guard case .string(let topic)? = json["topic"], !topic.isEmpty else {
            return .failure(Message(text: "missing \"topic\" string"))
        }
        guard let payload = json["payload"] else { return .failure(Message(text: "missing \"payload\"")) }
        let timestamp: Int64
        switch json["ts"] {
        case .number(let value)?:
            guard value.isFinite, value == value.rounded() else {
                return .failure(Message(text: "\"ts\" must be whole Unix milliseconds"))
            }
            guard Double(Timestamp.validRange.lowerBound) <= value, value <= Double(Timestamp.validRange.upperBound)
            else {
                return .failure(Message(text: "\"ts\" \(JSONValue.format(value)) is outside years 1 to 9999"))
            }
            timestamp = Int64(value)
        case .string(let text)?:
            guard let parsed = Timestamp.parseRFC3339(text) else {
                return .failure(Message(text: "\"ts\" '\(text)' is not RFC 3339 (e.g. 2026-11-29T10:00:00.250Z)"))
            }
            guard Timestamp.validRange.contains(parsed) else {
                return .failure(Message(text: "\"ts\" '\(text)' is outside years 1 to 9999"))
            }
            timestamp = parsed
        default:
            return .failure(Message(text: "missing \"ts\" (Unix ms or RFC 3339)"))
        }
        return .success(Reading(topic: topic, payload: RenderedAction.payloadBytes(payload), timestamp: timestamp))
    }
}

/// Every bad line of a readings file.
public struct RecordedReadingsError: Error, CustomStringConvertible, Sendable {
    public var lines: [RecordedReadings.LineError]
    public var description: String { lines.map(\.description).joined(separator: "\n") }
}

/// Time helpers that need no clock.
public enum Timestamp {
    /// The Unix milliseconds of 0001-01-01T00:00:00Z through 9999-12-31T23:59:59.999Z: every time taken
    /// from outside must be in it, so that adding any rule duration (at most 100 years) cannot overflow.
    public static let validRange: ClosedRange<Int64> = -62_135_596_800_000...253_402_300_799_999

    /// Unix milliseconds as RFC 3339 in UTC with milliseconds: `2026-12-04T18:30:00.123Z`.
    public static func rfc3339(_ milliseconds: Int64) -> String {
        let days = floorDivide(milliseconds, 86_400_000)
        let date = CivilDate(daysSinceEpoch: days)
        let inDay = milliseconds - days * 86_400_000
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let fraction = inDay % 1000
        let millis = fraction < 10 ? "00\(fraction)" : fraction < 100 ? "0\(fraction)" : "\(fraction)"
        let year = String(date.year)
        return String(repeating: "0", count: max(0, 4 - year.count)) + year + "-\(two(Int64(date.month)))-"
            + "\(two(Int64(date.day)))T\(two(inDay / 3_600_000)):\(two(inDay / 60_000 % 60)):"
            + "\(two(inDay / 1000 % 60)).\(millis)Z"
    }

    /// Parses `2026-11-29T10:00:00Z`, `…:00.123456+01:00` into Unix milliseconds: 0 to 9 fraction digits (cut to
    /// the millisecond), then `Z` or a `±HH:MM` offset.
    public static func parseRFC3339(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count else { return nil }
            var value = 0
            for index in range {
                let byte = bytes[index]
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard bytes.count >= 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t") || bytes[10] == UInt8(ascii: " "),
            bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        var millisecond = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var digits = 0
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                if digits < 3 { millisecond = millisecond * 10 + Int(bytes[index] - UInt8(ascii: "0")) }
                digits += 1
                index += 1
            }
            guard (1...9).contains(digits) else { return nil }
            for _ in digits..<max(digits, 3) { millisecond *= 10 }
        }
        var offsetMinutes = 0
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let offsetHour = number(index + 1..<index + 3), index + 3 < bytes.count,
                bytes[index + 3] == UInt8(ascii: ":"), let offsetMinute = number(index + 4..<index + 6),
                offsetHour < 24, offsetMinute < 60
            else { return nil }
            offsetMinutes = (offsetHour * 60 + offsetMinute) * (bytes[index] == UInt8(ascii: "-") ? -1 : 1)
            index += 6
        default:
            return nil
        }
        guard index == bytes.count else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offsetMinutes * 60)
        return seconds * 1000 + Int64(millisecond)
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
