/// The messages a client receives, in arrival order, through a bounded buffer.
///
/// When the consumer falls behind by more than `MQTTConfiguration.receiveBufferCapacity` messages,
/// new arrivals are dropped, counted in `MQTTClient.droppedMessageCount` and logged.
/// Iterate it from one task only.
public struct MQTTMessages: AsyncSequence, Sendable {
    public typealias Element = MQTTMessage

    let stream: AsyncStream<MQTTMessage>

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<MQTTMessage>.AsyncIterator

        public mutating func next() async -> MQTTMessage? {
            await base.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator())
    }
}
