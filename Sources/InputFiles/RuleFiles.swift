import Foundation
import Rules

/// Finds and reads rule files on disk for the pure `Rules` core.
public enum RuleFiles {
    /// Every `*.yaml` / `*.yml` under each path (a folder, searched recursively, or a file), sorted.
    /// Test files (`*.test.yaml`, `*.test.yml`) are skipped: they are not rules.
    public static func sources(at paths: [String]) throws -> [RuleSource] {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw RuleFilesError("\(path): no such file or directory")
            }
            if isDirectory.boolValue {
                files += yamlFiles(under: path)
            } else {
                files.append(path)
            }
        }
        return try files.map { RuleSource(path: $0, text: try read($0)) }
    }

    /// Loads and validates the rules under `paths`.
    public static func load(_ paths: [String]) throws -> RuleSet {
        try RuleLoader.load(try sources(at: paths), zones: .system)
    }

    /// The rule test files under each path: a folder gives every `*.test.yaml` / `*.test.yml` in it
    /// (recursively, sorted), a file is taken as it is.
    public static func testFiles(at paths: [String]) throws -> [String] {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw RuleFilesError("\(path): no such file or directory")
            }
            guard isDirectory.boolValue else {
                files.append(path)
                continue
            }
            let found = yamlFiles(under: path, tests: true)
            guard !found.isEmpty else { throw RuleFilesError("\(path): no rule test files (*.test.yaml) in it") }
            files += found
        }
        return files
    }

    /// The text of one file, or an error that names it.
    public static func read(_ path: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            // Foundation's own text on Linux is "The operation could not be completed"; the POSIX reason says why.
            let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
            let reason =
                underlying.flatMap { $0.domain == NSPOSIXErrorDomain ? String(cString: strerror(Int32($0.code))) : nil }
                ?? error.localizedDescription
            throw RuleFilesError("\(path): cannot read: \(reason)")
        }
    }

    static func yamlFiles(under directory: String, tests: Bool = false) -> [String] {
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        guard let enumerator = FileManager.default.enumerator(atPath: base) else { return [] }
        var files: [String] = []
        while let relative = enumerator.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            guard !name.hasPrefix("."), name.hasSuffix(".yaml") || name.hasSuffix(".yml") else { continue }
            let isTest = name.hasSuffix(".test.yaml") || name.hasSuffix(".test.yml")
            guard isTest == tests else { continue }
            files.append(base + "/" + relative)
        }
        return files.sorted()
    }
}

/// A rule file that cannot be found or read.
public struct RuleFilesError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
