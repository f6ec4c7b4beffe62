import FileFormats

/// Reads the top-level fields a topic's rules need straight from a payload's bytes, without building a
/// `JSONValue`: the common sensor payload (`{"value": 21.5, "unit": "C", "seq": 7}`, or a bare number)
/// costs one pass and no allocation.
///
/// It accepts only what it can decide exactly as `JSONValue(parsing:)` would: a flat object of ASCII
/// keys and ASCII strings without escapes, numbers, `true`, `false`, `null`; or a bare number. Anything
/// else (nesting, escapes, non-ASCII, invalid JSON) answers nil and the caller uses the full parser, so
/// the result never differs from decoding the payload and looking the fields up.
struct PayloadScanner {
    /// What a scan found.
    enum Shape {
        /// An object; `values[i]` is the first value of `keys[i]`, nil when absent.
        case object
        /// A bare number: every rule reads it whatever its field.
        case number(Double)
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0

    private init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Scans `bytes` for `keys` (their UTF-8 in `keyBytes` at `keyRanges`); fills `values` (same count).
    static func scan(
        _ bytes: UnsafeBufferPointer<UInt8>,
        keyBytes: UnsafeBufferPointer<UInt8>,
        keyRanges: UnsafeBufferPointer<Range<Int>>,
        into values: inout [JSONValue?]
    ) -> Shape? {
        var scanner = PayloadScanner(bytes: bytes)
        scanner.skipWhitespace()
        guard scanner.index < bytes.count else { return nil }
        if bytes[scanner.index] != UInt8(ascii: "{") {
            guard let number = scanner.number() else { return nil }
            scanner.skipWhitespace()
            return scanner.index == bytes.count ? .number(number) : nil
        }
        for position in keyRanges.indices { values[position] = nil }
        scanner.index += 1
        scanner.skipWhitespace()
        if scanner.peek(UInt8(ascii: "}")) {
            scanner.index += 1
        } else {
            while true {
                scanner.skipWhitespace()
                guard scanner.peek(UInt8(ascii: "\"")), let key = scanner.plainString() else { return nil }
                scanner.skipWhitespace()
                guard scanner.peek(UInt8(ascii: ":")) else { return nil }
                scanner.index += 1
                scanner.skipWhitespace()
                var wanted = -1
                for position in keyRanges.indices where values[position] == nil {
                    let range = keyRanges[position]
                    if range.count == key.count
                        && (0..<key.count).allSatisfy({ keyBytes[range.lowerBound + $0] == bytes[key.lowerBound + $0] })
                    {
                        wanted = position
                        break
                    }
                }
                guard let value = scanner.scalar(decodingString: wanted >= 0) else { return nil }
                if wanted >= 0 { values[wanted] = value }
                scanner.skipWhitespace()
                guard scanner.index < bytes.count else { return nil }
                if bytes[scanner.index] == UInt8(ascii: ",") {
                    scanner.index += 1
                    continue
                }
                guard bytes[scanner.index] == UInt8(ascii: "}") else { return nil }
                scanner.index += 1
                break
            }
        }
        scanner.skipWhitespace()
        return scanner.index == bytes.count ? .object : nil
    }

    private func peek(_ byte: UInt8) -> Bool {
        index < bytes.count && bytes[index] == byte
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    /// A string of printable ASCII without escapes, as the range of its content; nil for anything else.
    private mutating func plainString() -> Range<Int>? {
        index += 1
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return start..<(index - 1)
            }
            guard byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        return nil
    }

    /// A scalar value; `.null` stands in for an unwanted string (never stored).
    private mutating func scalar(decodingString: Bool) -> JSONValue? {
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            guard let range = plainString() else { return nil }
            guard decodingString else { return .null }
            return .string(String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self))
        case UInt8(ascii: "t"): return literal("true", .bool(true))
        case UInt8(ascii: "f"): return literal("false", .bool(false))
        case UInt8(ascii: "n"): return literal("null", .null)
        case UInt8(ascii: "{"), UInt8(ascii: "["): return nil
        default: return number().map(JSONValue.number)
        }
    }

    private mutating func literal(_ word: StaticString, _ value: JSONValue) -> JSONValue? {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return nil }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return nil }
        index += count
        return value
    }

    private static let powersOfTen: [Double] = (0...22).map { exponent in
        var value = 1.0
        for _ in 0..<exponent { value *= 10 }
        return value
    }

    /// A JSON number. Exact without `strtod` when the digits fit in 2^53 and the decimal exponent in
    /// ±22 (both operands are then exact doubles, so one multiplication or division rounds correctly);
    /// otherwise nil, and the caller's full parser decides.
    private mutating func number() -> Double? {
        var negative = false
        if peek(UInt8(ascii: "-")) {
            negative = true
            index += 1
        }
        var mantissa: UInt64 = 0
        var exponent = 0
        var digitCount = 0
        let integerStart = index
        while index < bytes.count, bytes[index] &- UInt8(ascii: "0") < 10 {
            mantissa = mantissa &* 10 &+ UInt64(bytes[index] &- UInt8(ascii: "0"))
            digitCount += 1
            index += 1
        }
        guard index > integerStart else { return nil }
        if bytes[integerStart] == UInt8(ascii: "0"), index - integerStart > 1 { return nil }
        if peek(UInt8(ascii: ".")) {
            index += 1
            let fractionStart = index
            while index < bytes.count, bytes[index] &- UInt8(ascii: "0") < 10 {
                mantissa = mantissa &* 10 &+ UInt64(bytes[index] &- UInt8(ascii: "0"))
                digitCount += 1
                exponent -= 1
                index += 1
            }
            guard index > fractionStart else { return nil }
        }
        if peek(UInt8(ascii: "e")) || peek(UInt8(ascii: "E")) {
            index += 1
            var exponentNegative = false
            if peek(UInt8(ascii: "+")) || peek(UInt8(ascii: "-")) {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            let exponentStart = index
            var written = 0
            while index < bytes.count, bytes[index] &- UInt8(ascii: "0") < 10 {
                if written < 10_000 { written = written * 10 + Int(bytes[index] &- UInt8(ascii: "0")) }
                index += 1
            }
            guard index > exponentStart else { return nil }
            exponent += exponentNegative ? -written : written
        }
        // Up to 19 digits cannot wrap a UInt64.
        guard digitCount <= 19, mantissa <= 1 << 53, (-22...22).contains(exponent) else { return nil }
        var value = Double(mantissa)
        if exponent < 0 {
            value /= PayloadScanner.powersOfTen[-exponent]
        } else {
            value *= PayloadScanner.powersOfTen[exponent]
        }
        return negative ? -value : value
    }
}
