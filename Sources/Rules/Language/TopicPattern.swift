/// A rule's topic: an MQTT filter whose levels may be `{name}` captures (matching one level, like `+`).
public struct TopicPattern: Hashable, Sendable, CustomStringConvertible {
    /// One level of the pattern.
    public enum Level: Hashable, Sendable {
        case literal(String)
        case capture(String)
        case anyLevel  // +
        case remainingLevels  // #
    }

    /// The levels, in order.
    public let levels: [Level]
    /// The names of the captures, in order.
    public let captureNames: [String]

    /// Parses a pattern; throws a message naming the problem.
    public init(parsing text: String) throws(PatternError) {
        guard !text.isEmpty else { throw PatternError("topic is empty") }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw PatternError("topic '\(text.debugDescription)' contains a control character")
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        var levels: [Level] = []
        var names: [String] = []
        for (index, part) in parts.enumerated() {
            if part == "#" {
                guard index == parts.count - 1 else {
                    throw PatternError("'#' must be the last level of topic '\(text)'")
                }
                levels.append(.remainingLevels)
            } else if part == "+" {
                levels.append(.anyLevel)
            } else if part.hasPrefix("{") && part.hasSuffix("}") && part.count > 2 {
                let name = String(part.dropFirst().dropLast())
                guard TopicPattern.isValidCaptureName(name) else {
                    throw PatternError("capture '{\(name)}' in topic '\(text)' must be a name of letters, digits and _")
                }
                guard !names.contains(name) else {
                    throw PatternError("capture '{\(name)}' appears twice in topic '\(text)'")
                }
                names.append(name)
                levels.append(.capture(name))
            } else {
                if part.contains("#") {
                    throw PatternError("'#' must fill a whole level (and be the last) in topic '\(text)'")
                }
                if part.contains("+") {
                    throw PatternError("'+' must fill a whole level in topic '\(text)'")
                }
                if part.contains("{") || part.contains("}") {
                    throw PatternError("a capture '{name}' must fill a whole level in topic '\(text)'")
                }
                levels.append(.literal(String(part)))
            }
        }
        self.levels = levels
        self.captureNames = names
    }

    /// The MQTT subscription filter (captures become `+`).
    public var filter: String {
        levels.map { level in
            switch level {
            case .literal(let text): text
            case .capture, .anyLevel: "+"
            case .remainingLevels: "#"
            }
        }.joined(separator: "/")
    }

    public var description: String {
        levels.map { level in
            switch level {
            case .literal(let text): text
            case .capture(let name): "{\(name)}"
            case .anyLevel: "+"
            case .remainingLevels: "#"
            }
        }.joined(separator: "/")
    }

    /// The captured values, in `captureNames` order, when `topicLevels` matches; nil otherwise.
    public func captures(in topicLevels: [Substring]) -> [String]? {
        var values: [String] = []
        values.reserveCapacity(captureNames.count)
        for (index, level) in levels.enumerated() {
            switch level {
            case .remainingLevels:
                if index == 0, let first = topicLevels.first, first.hasPrefix("$") { return nil }
                return values
            case .literal(let text):
                guard index < topicLevels.count, topicLevels[index] == text else { return nil }
            case .anyLevel, .capture:
                guard index < topicLevels.count else { return nil }
                if index == 0, topicLevels[0].hasPrefix("$") { return nil }
                if case .capture = level { values.append(String(topicLevels[index])) }
            }
        }
        return topicLevels.count == levels.count ? values : nil
    }

    static func isValidCaptureName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.properties.isAlphabetic || first == "_" else { return false }
        return name.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "_"
        }
    }

    /// Whether a captured value may be used in a topic: `[A-Za-z0-9_.-]{1,64}`.
    public static func isSafeCaptureValue(_ value: String) -> Bool {
        let utf8 = value.utf8
        guard (1...64).contains(utf8.count) else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
                true
            default: false
            }
        }
    }

    /// Why a pattern is invalid.
    public struct PatternError: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }
}
