import Foundation
import Rules
import Simulation

/// Finds and reads device files on disk for the pure `Simulation` core.
public enum DeviceFiles {
    /// Loads the devices of files or folders (folders: every `*.yaml`/`*.yml`, recursively).
    public static func load(_ paths: [String], replicas: Int = 1) throws -> [Device] {
        let sources = try RuleFiles.sources(at: paths).map { (path: $0.path, text: $0.text) }
        return try DeviceLoader.load(sources, replicas: replicas)
    }
}
