import Foundation
import Testing

@testable import PartitionedEngine

@Suite("Decision records")
struct DecisionRecordTests {
    static let records: [(DecisionRecord, [String])] = [
        (DecisionRecord(partition: 3, epoch: 17, sequence: 1_234, engine: "engine-a"), [#"{"event":"transition"}"#]),
        (DecisionRecord(partition: 0, epoch: 2, sequence: 0, engine: "b", takeover: true), []),
        (DecisionRecord(partition: 15, epoch: .max, sequence: .max, engine: #"odd "name"\"#), ["{}", "{}"]),
    ]

    /// A record reads back as it was written, and its decisions are JSON values of its own, in order.
    @Test(arguments: records)
    func aRecordReadsBack(_ record: DecisionRecord, decisions: [String]) throws {
        let bytes = record.encoded(decisions: decisions)
        #expect(try DecisionRecord.decode(bytes) == record)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect((object["decisions"] as? [Any])?.count == decisions.count)
    }

    /// Stream messages carry the partition in their subjects; the decisions and ticks have their own.
    @Test func subjects() {
        #expect(PartitionedEngineConfiguration.decisionSubject(7) == "decisions.7")
        #expect(PartitionedEngineConfiguration.tickSubject(7) == "part.7.tick")
    }
}
