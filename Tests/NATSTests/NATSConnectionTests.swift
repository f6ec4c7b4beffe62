import Logging
import MQTT
import NATS
import NATSTestSupport
import Testing

/// The NATS client against a real `nats-server` with JetStream, one per test.
@Suite("NATS client against a real nats-server")
struct NATSConnectionTests {
    static let logger = Logger(label: "nats-test")

    static func connect(_ server: TestNATSServer, _ name: String) async throws -> NATSConnection {
        try await NATSConnection.connect(NATSConfiguration(servers: [server.url], name: name), logger: logger)
    }

    @Test func publishedMessagesReachAWildcardSubscriberInOrder() async throws {
        let server = try await TestNATSServer()
        let connection = try await Self.connect(server, "core")
        let subscription = try connection.subscribe(to: "core-test.*.reading")
        try await connection.flush()
        for index in 0..<5 {
            try connection.publish(Array("\(index)".utf8), to: "core-test.d\(index).reading")
        }
        try connection.publish(Array("x".utf8), to: "core-test.d9.other")
        let received = try await withTimeout(.seconds(10), "five messages") {
            var received: [String] = []
            for await message in subscription {
                received.append("\(message.subject)=\(String(decoding: message.payload, as: UTF8.self))")
                if received.count == 5 { break }
            }
            return received
        }
        #expect(received == (0..<5).map { "core-test.d\($0).reading=\($0)" })
        subscription.cancel()
        connection.close()
        await server.stop()
    }

    /// A stream keeps what was published; a reader starts at an exact sequence, reads in order and goes on live.
    @Test func aStreamIsReadFromAnExactSequenceAndThenLive() async throws {
        let server = try await TestNATSServer()
        let connection = try await Self.connect(server, "stream")
        try await connection.createStream(named: "READINGS", subjects: ["part.>"])
        // Creating it again with the same configuration is not an error.
        try await connection.createStream(named: "READINGS", subjects: ["part.>"])
        var sequences: [UInt64] = []
        for index in 1...5 {
            sequences.append(try await connection.publishToStream(Array("r\(index)".utf8), subject: "part.0.d\(index)"))
        }
        #expect(sequences == [1, 2, 3, 4, 5])
        let reader = try connection.readStream("READINGS", filter: "part.0.>", from: 3)
        let read = try await withTimeout(.seconds(10), "the stream from sequence 3, then a live message") {
            var read: [String] = []
            var iterator = reader.makeAsyncIterator()
            while read.count < 3, let message = await iterator.next() {
                // The backlog counts down to 0: caught up.
                #expect(message.pendingAfter == 5 - message.streamSequence)
                read.append(
                    "\(message.streamSequence) \(message.subject) \(String(decoding: message.payload, as: UTF8.self))"
                )
                #expect(message.storedAtNanoseconds > 1_700_000_000_000_000_000)
            }
            let live = try await connection.publishToStream(Array("r6".utf8), subject: "part.0.d6")
            #expect(live == 6)
            if let message = await iterator.next() {
                read.append(
                    "\(message.streamSequence) \(message.subject) \(String(decoding: message.payload, as: UTF8.self))"
                )
            }
            return read
        }
        #expect(read == ["3 part.0.d3 r3", "4 part.0.d4 r4", "5 part.0.d5 r5", "6 part.0.d6 r6"])
        reader.cancel()
        connection.close()
        await server.stop()
    }

    /// What leases are built on: a create is refused while the key exists, an update with a stale revision
    /// is refused, and after the bucket's TTL the key is gone and a rival's create succeeds. (The TTL leaves
    /// the steps before the expiry 3 s: with 1 s, a loaded machine once let the key expire before the renewal.)
    @Test func keyValueRevisionsFenceWritersAndKeysExpire() async throws {
        let server = try await TestNATSServer()
        let owner = try await Self.connect(server, "owner")
        let rival = try await Self.connect(server, "rival")
        let leases = try await owner.keyValue(bucket: "leases", ttl: .seconds(3))
        let rivalLeases = try await rival.keyValue(bucket: "leases", ttl: .seconds(3))
        #expect(try await leases.get("p0") == nil)
        let first = try await leases.create("p0", Array("owner".utf8))
        await #expect {
            _ = try await rivalLeases.create("p0", Array("rival".utf8))
        } throws: { ($0 as? NATSError)?.kind == .revisionMismatch }
        let renewed = try await leases.update("p0", Array("owner".utf8), expectedRevision: first)
        #expect(renewed > first)
        await #expect {
            _ = try await rivalLeases.update("p0", Array("rival".utf8), expectedRevision: first)
        } throws: { ($0 as? NATSError)?.kind == .revisionMismatch }
        let entry = try #require(try await rivalLeases.get("p0"))
        #expect(entry.value == Array("owner".utf8) && entry.revision == renewed)
        // Not renewed: the key expires after the TTL and the rival takes it.
        let taken = try await withTimeout(.seconds(15), "the lease expiring") {
            while true {
                do {
                    return try await rivalLeases.create("p0", Array("rival".utf8))
                } catch let error as NATSError where error.kind == .revisionMismatch {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        }
        #expect(taken > renewed)
        await #expect {
            _ = try await leases.update("p0", Array("owner".utf8), expectedRevision: renewed)
        } throws: { ($0 as? NATSError)?.kind == .revisionMismatch }
        owner.close()
        rival.close()
        await server.stop()
    }

    /// A reader must learn that its connection is gone: the sequences end when the connection closes.
    @Test func subscriptionsEndWhenTheConnectionCloses() async throws {
        let server = try await TestNATSServer()
        let connection = try await Self.connect(server, "closing")
        try await connection.createStream(named: "CLOSING", subjects: ["closing.>"])
        let core = try connection.subscribe(to: "closing-core.>")
        let stream = try connection.readStream("CLOSING", filter: "closing.>")
        try await connection.flush()
        connection.close()
        try await withTimeout(.seconds(10), "both sequences ending") {
            for await _ in core {}
            for await _ in stream {}
        }
        await #expect(throws: NATSError.self) { try await connection.publishToStream([1], subject: "closing.x") }
        await server.stop()
    }

    @Test func aServerThatIsNotThereIsAClearError() async throws {
        let port = try TestNATSServer.clusterPorts(1)[0].client
        let error = await #expect(throws: NATSError.self) {
            _ = try await NATSConnection.connect(
                NATSConfiguration(servers: ["nats://127.0.0.1:\(port)"], name: "nobody", requestTimeout: .seconds(1)),
                logger: Self.logger
            )
        }
        #expect(error?.kind == .notConnected, "\(String(describing: error))")
        #expect(error?.message.contains("127.0.0.1:\(port)") == true, "\(String(describing: error))")
    }
}
