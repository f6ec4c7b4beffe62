/// Durations in rule files: `500ms`, `10s`, `5m`, `1h`, `1h30m`, `2d`, or `0`. Stored as milliseconds.
public enum RuleDuration {
    /// The longest duration a file may give: 100 years of 365.25 days. Times plus durations stay far
    /// from Int64's limits, so the evaluator's arithmetic cannot overflow.
    public static let maximumMilliseconds: Int64 = 3_155_760_000_000

    /// Parses a duration; nil when malformed.
    public static func milliseconds(_ text: String) -> Int64? {
        if text == "0" { return 0 }
        var total: Int64 = 0
        var number: Int64?
        var sawUnit = false
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.first {
            if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                let (scaled, overflow1) = (number ?? 0).multipliedReportingOverflow(by: 10)
                let (added, overflow2) = scaled.addingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
                guard !overflow1, !overflow2 else { return nil }
                number = added
                iterator = iterator.dropFirst()
                continue
            }
            guard let value = number else { return nil }
            let unit: Int64
            if iterator.starts(with: "ms".utf8) {
                unit = 1
                iterator = iterator.dropFirst(2)
            } else {
                switch byte {
                case UInt8(ascii: "s"): unit = 1000
                case UInt8(ascii: "m"): unit = 60_000
                case UInt8(ascii: "h"): unit = 3_600_000
                case UInt8(ascii: "d"): unit = 86_400_000
                default: return nil
                }
                iterator = iterator.dropFirst()
            }
            let (product, overflow1) = value.multipliedReportingOverflow(by: unit)
            let (sum, overflow2) = total.addingReportingOverflow(product)
            guard !overflow1, !overflow2 else { return nil }
            total = sum
            number = nil
            sawUnit = true
        }
        guard number == nil, sawUnit else { return nil }
        return total
    }

    /// Formats milliseconds the way rule files write them (`1h30m`, `2.5s`).
    public static func format(_ milliseconds: Int64) -> String {
        if milliseconds == 0 { return "0s" }
        if milliseconds % 1000 != 0 {
            return milliseconds < 1000 ? "\(milliseconds)ms" : "\(JSONValue.format(Double(milliseconds) / 1000))s"
        }
        var seconds = milliseconds / 1000
        var text = ""
        for (size, unit) in [(86_400 as Int64, "d"), (3600, "h"), (60, "m"), (1, "s")] where seconds >= size {
            text += "\(seconds / size)\(unit)"
            seconds %= size
        }
        return text
    }
}
