import Foundation
import Rules

extension TimeZoneDatabase {
    /// The system's zone database: `$TZDIR`, else `/usr/share/zoneinfo` (Debian's `tzdata`).
    public static var system: TimeZoneDatabase {
        let directory = ProcessInfo.processInfo.environment["TZDIR"] ?? "/usr/share/zoneinfo"
        return TimeZoneDatabase(origin: "the zone database in \(directory)") { name in
            // An IANA name: letters, digits, '_', '-', '+' and '/' between parts; never '..' or absolute.
            let parts = name.split(separator: "/", omittingEmptySubsequences: false)
            guard !parts.isEmpty,
                parts.allSatisfy({ part in
                    !part.isEmpty && part != "." && part != ".."
                        && part.allSatisfy { $0.isLetter || $0.isNumber || "_-+".contains($0) }
                })
            else { return nil }
            guard let data = FileManager.default.contents(atPath: directory + "/" + name) else { return nil }
            return TimeZoneRules(name: name, tzif: [UInt8](data))
        }
    }
}
