import Foundation
import NATS

/// Partition snapshots in a NATS key-value bucket, fenced: a save names the revision of the snapshot it
/// replaces, so a deposed owner's late save fails instead of overwriting its successor's.
///
/// A snapshot can be larger than a message (1 MB by default), so it is stored as chunks under keys of their
/// own (`chunk.<partition>.<epoch>.<nonce>.<index>`, written first) and a small manifest (`snapshot.<partition>`,
/// written last, with the expected revision) that names them with the whole snapshot's length and checksum.
/// The chunks of the snapshot a manifest replaced are deleted after it; a save that fails leaves its chunks
/// for no manifest (bounded by the failures).
public final class PartitionSnapshotStore: Sendable {
    private let bucket: NATSKeyValue
    private let chunkSize: Int

    /// Opens (or creates) the bucket.
    public init(
        connection: NATSConnection,
        bucket: String = "sensor-pipeline-snapshots",
        replicas: Int = 1,
        chunkSize: Int = 512 * 1024
    ) async throws {
        self.bucket = try await connection.keyValue(bucket: bucket, replicas: replicas)
        self.chunkSize = max(1, chunkSize)
    }

    private struct Manifest: Codable {
        var epoch: UInt64
        var chunks: [String]
        var length: Int
        var checksum: UInt64
    }

    private static func manifestKey(_ partition: Int) -> String { "snapshot.\(partition)" }

    /// The partition's latest snapshot and its revision (to name in the next save), or nil when it has none.
    public func load(partition: Int) async throws -> (snapshot: PartitionSnapshot, revision: UInt64)? {
        guard let entry = try await bucket.get(Self.manifestKey(partition)) else { return nil }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(entry.value))
        var bytes: [UInt8] = []
        bytes.reserveCapacity(manifest.length)
        for key in manifest.chunks {
            guard let chunk = try await bucket.get(key) else {
                throw PartitionSnapshotError.damaged("partition \(partition): chunk \(key) is missing")
            }
            bytes += chunk.value
        }
        guard bytes.count == manifest.length, Self.checksum(bytes) == manifest.checksum else {
            throw PartitionSnapshotError.damaged(
                "partition \(partition): the chunks do not match their manifest (revision \(entry.revision))"
            )
        }
        return (try JSONDecoder().decode(PartitionSnapshot.self, from: Data(bytes)), entry.revision)
    }

    /// Saves a snapshot in place of the one at `expectedRevision` (nil: the partition has none yet); returns
    /// the new revision. Throws `PartitionSnapshotError.fenced` when another save came first.
    public func save(_ snapshot: PartitionSnapshot, replacing expectedRevision: UInt64?) async throws -> UInt64 {
        let bytes = [UInt8](try JSONEncoder().encode(snapshot))
        let nonce = UInt64.random(in: 0...UInt64.max)
        var keys: [String] = []
        var start = 0
        repeat {
            let end = min(bytes.count, start + chunkSize)
            let key = "chunk.\(snapshot.partition).\(snapshot.epoch).\(nonce).\(keys.count)"
            try await bucket.put(key, Array(bytes[start..<end]))
            keys.append(key)
            start = end
        } while start < bytes.count
        let manifest = Manifest(
            epoch: snapshot.epoch,
            chunks: keys,
            length: bytes.count,
            checksum: Self.checksum(bytes)
        )
        let manifestBytes = [UInt8](try JSONEncoder().encode(manifest))
        let key = Self.manifestKey(snapshot.partition)
        let previous = try await bucket.get(key).flatMap {
            try? JSONDecoder().decode(Manifest.self, from: Data($0.value))
        }
        let revision: UInt64
        do {
            if let expectedRevision {
                revision = try await bucket.update(key, manifestBytes, expectedRevision: expectedRevision)
            } else {
                revision = try await bucket.create(key, manifestBytes)
            }
        } catch let error as NATSError where error.kind == .revisionMismatch {
            for chunk in keys { try? await bucket.delete(chunk) }
            throw PartitionSnapshotError.fenced(
                "partition \(snapshot.partition): another owner saved a snapshot since revision "
                    + "\(expectedRevision.map(String.init) ?? "none") (this owner's epoch \(snapshot.epoch))"
            )
        }
        for chunk in previous?.chunks ?? [] where !keys.contains(chunk) { try? await bucket.delete(chunk) }
        return revision
    }

    /// FNV-1a, 64 bit.
    static func checksum(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
        return hash
    }
}

/// Why a snapshot could not be saved or loaded.
public enum PartitionSnapshotError: Error, CustomStringConvertible, Sendable {
    /// Another owner saved since the revision this save replaces: this owner was deposed.
    case fenced(String)
    /// A manifest's chunks are missing or do not match it.
    case damaged(String)

    public var description: String {
        switch self {
        case .fenced(let message): "snapshot refused: \(message)"
        case .damaged(let message): "snapshot damaged: \(message)"
        }
    }
}
