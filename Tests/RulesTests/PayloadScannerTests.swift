import FileFormats
import PropertyBased
import Synchronization
import Testing

@testable import Rules

/// The scanner is a shortcut past the full JSON parser: whenever it answers, the answer must be what
/// parsing the payload and looking the keys up gives.
@Suite("Payload scanner agrees with the JSON parser")
struct PayloadScannerTests {
    static let keys = ["seq", "value", "unit", "v a", "é", ""]

    static let fragments = [
        "1", "-0", "0", "-1.5", "1.5e3", "2.5E-3", "1e999", "01", "1.", ".5", "-", "1e", "123456789012345678901",
        "9007199254740993", "0.1", "1e22", "1e23", "-12.345e-7", "17", "\"C\"", "\"a\\\"b\"", "\"é\"", "\"\"", "true",
        "false", "null", "nul", "{}", "[1]", "{\"a\": 1}", "\u{01}", "\"x\u{01}\"",
    ]

    /// Scans `text` for `keys`; nil when the scanner defers to the full parser.
    static func scan(_ text: String, keys: [String]) -> (PayloadScanner.Shape, [JSONValue?])? {
        var keyBytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        for key in keys {
            ranges.append(keyBytes.count..<(keyBytes.count + key.utf8.count))
            keyBytes += key.utf8
        }
        var values = [JSONValue?](repeating: .bool(false), count: keys.count)
        let bytes = Array(text.utf8)
        let shape = bytes.withUnsafeBufferPointer { bytes in
            keyBytes.withUnsafeBufferPointer { keyBytes in
                ranges.withUnsafeBufferPointer { ranges in
                    PayloadScanner.scan(bytes, keyBytes: keyBytes, keyRanges: ranges, into: &values)
                }
            }
        }
        return shape.map { ($0, values) }
    }

    /// Checks the scanner against the parser; returns whether the scanner answered (rather than deferring).
    @discardableResult
    static func expectAgreement(_ text: String) -> Bool {
        guard let (shape, values) = scan(text, keys: keys) else { return false }
        let parsed = JSONValue(parsing: Array(text.utf8))
        switch shape {
        case .number(let number):
            guard case .number(let expected)? = parsed else {
                Issue.record(
                    "scanner read a number from \(text.debugDescription), the parser \(String(describing: parsed))"
                )
                return true
            }
            #expect(number.bitPattern == expected.bitPattern, "\(text.debugDescription)")
        case .object:
            guard let parsed, case .object = parsed else {
                Issue.record("scanner read an object from \(text.debugDescription), the parser did not")
                return true
            }
            for (index, key) in keys.enumerated() {
                #expect(values[index] == parsed[key], "key \(key.debugDescription) of \(text.debugDescription)")
                if case .number(let got)? = values[index], case .number(let expected)? = parsed[key] {
                    #expect(got.bitPattern == expected.bitPattern, "\(text.debugDescription)")
                }
            }
        }
        return true
    }

    /// How many texts a property test checked and how many the scanner answered: a scanner that always
    /// deferred to the parser would agree with it trivially, so each test also requires answers.
    final class Answers: Sendable {
        private let counts = Atomic<Int>(0)
        private let answers = Atomic<Int>(0)

        func check(_ text: String) {
            counts.add(1, ordering: .relaxed)
            if PayloadScannerTests.expectAgreement(text) { answers.add(1, ordering: .relaxed) }
        }

        var share: Double { Double(answers.load(ordering: .relaxed)) / Double(max(1, counts.load(ordering: .relaxed))) }
    }

    @Test(arguments: [
        "{\"value\": 21.5, \"unit\": \"C\", \"seq\": 7}", " 21.5 ", "-0", "1e999", "{\"value\": 1, \"value\": 2}",
        "{\"value\": 1,}", "{\"value\" 1}", "{}", " { } ", "{\"value\": 1} x", "{\"value\": {\"a\": 1}}",
        "{\"seq\": 12345678901234567890}", "{\"value\": 0.30000000000000004}", "{\"é\": 3}", "",
    ])
    func examples(_ text: String) {
        Self.expectAgreement(text)
    }

    /// The examples the scanner must answer itself (the common payloads), not hand to the parser.
    @Test(arguments: ["{\"value\": 21.5, \"unit\": \"C\", \"seq\": 7}", " 21.5 ", "-0", "{}", " { } ", "17"])
    func answeredExamples(_ text: String) {
        #expect(Self.expectAgreement(text), "the scanner deferred \(text.debugDescription)")
    }

    @Test func commonPayloadIsScannedWithoutTheParser() throws {
        let (shape, values) = try #require(
            Self.scan("{\"value\": 21.5, \"unit\": \"C\", \"seq\": 7}", keys: ["seq", "value"])
        )
        guard case .object = shape else { throw ScanError.notAnObject }
        #expect(values == [.number(7), .number(21.5)])
    }

    enum ScanError: Error { case notAnObject }

    @Test func randomFlatObjectsAgree() async {
        let answers = Answers()
        await propertyCheck(
            count: 2000,
            input: Gen.element(of: Self.keys).array(of: 0...5),
            Gen.element(of: Self.fragments).array(of: 0...5),
            Gen.element(of: [", ", ",", " , ", ": ", ""]).array(of: 1...3)
        ) { keys, fragments, separators in
            let keys = keys.compactMap { $0 }
            let fragments = fragments.compactMap { $0 }
            let separators = separators.compactMap { $0 }
            var text = "{"
            for (index, key) in keys.enumerated() {
                if index > 0, !separators.isEmpty { text += separators[index % separators.count] }
                text += "\"\(key)\": " + (index < fragments.count ? fragments[index] : "1")
            }
            text += "}"
            answers.check(text)
            answers.check(fragments.first ?? "")
        }
        #expect(answers.share > 0.15, "the scanner answered \(answers.share) of the texts")
    }

    @Test func randomNumbersAgree() async {
        let answers = Answers()
        await propertyCheck(
            count: 3000,
            input: Gen.double(in: -1e6...1e6),
            Gen.int(in: 0...17),
            Gen.int(in: -30...30)
        ) { value, digits, exponent in
            answers.check("\(value)")
            let mantissa = String(String(Int(abs(value) * 1000)).prefix(max(1, digits)))
            answers.check("\(mantissa)e\(exponent)")
            answers.check("{\"value\": -\(mantissa).\(digits)e\(exponent)}")
        }
        #expect(answers.share > 0.5, "the scanner answered \(answers.share) of the numbers")
    }
}
