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
        return try files.map { path in
            do {
                return RuleSource(path: path, text: try String(contentsOfFile: path, encoding: .utf8))
            } catch {
                throw RuleFilesError("\(path): cannot read: \(error.localizedDescription)")
            }
        }
    }

    /// Loads and validates the rules under `paths`.
    public static func load(_ paths: [String]) throws -> RuleSet {
        try RuleLoader.load(try sources(at: paths), zones: .system)
    }

    static func yamlFiles(under directory: String) -> [String] {
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        guard let enumerator = FileManager.default.enumerator(atPath: base) else { return [] }
        var files: [String] = []
        while let relative = enumerator.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            guard !name.hasPrefix("."), name.hasSuffix(".yaml") || name.hasSuffix(".yml") else { continue }
            guard !name.hasSuffix(".test.yaml"), !name.hasSuffix(".test.yml") else { continue }
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
