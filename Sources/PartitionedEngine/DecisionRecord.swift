import Foundation

/// One message of the decisions stream: what evaluating one stream message of a partition decided (its
/// transitions and commands, as audit lines), or an owner's takeover mark.
///
/// The records of a partition are written in stream order, each only if the last record on the partition's
/// subject is the one its writer wrote last (JetStream's expected last subject sequence). So a new owner
/// learns from the last record how far decisions were delivered (`sequence`), and its takeover mark fences
/// every record a deposed owner would still try to write.
struct DecisionRecord: Codable, Equatable {
    /// The partition.
    var partition: Int
    /// The lease epoch of the owner that wrote it.
    var epoch: UInt64
    /// The readings stream sequence whose evaluation decided this (a takeover mark carries the last one
    /// decided before it).
    var sequence: UInt64
    /// The engine that wrote it.
    var engine: String
    /// True for a takeover mark (no decisions).
    var takeover: Bool?

    /// The record as JSON, with the decisions' audit lines as a JSON array under `decisions`.
    func encoded(decisions: [String]) -> [UInt8] {
        var text = #"{"partition":\#(partition),"epoch":\#(epoch),"sequence":\#(sequence),"engine":"#
        text += Self.quoted(engine)
        if takeover == true { text += #","takeover":true"# }
        text += #","decisions":["# + decisions.joined(separator: ",") + "]}"
        return Array(text.utf8)
    }

    /// Reads a record's header (the decisions are not needed to take over).
    static func decode(_ bytes: [UInt8]) throws -> DecisionRecord {
        try JSONDecoder().decode(DecisionRecord.self, from: Data(bytes))
    }

    private static func quoted(_ text: String) -> String {
        let data = (try? JSONEncoder().encode(text)) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
