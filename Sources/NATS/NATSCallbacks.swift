import CNATS

/// What a subscription's callback hands its messages to. nats.c calls it on its own threads; it copies what
/// it needs and returns quickly.
final class NATSDeliveryContext<Message: Sendable>: Sendable {
    let deliver: @Sendable (Message) -> Void
    let finish: @Sendable () -> Void

    init(deliver: @escaping @Sendable (Message) -> Void, finish: @escaping @Sendable () -> Void) {
        self.deliver = deliver
        self.finish = finish
    }

    /// The pointer nats.c passes back to the callbacks: the context, retained until the subscription's
    /// completion callback (after its last message) releases it.
    func retainedPointer() -> UnsafeMutableRawPointer {
        Unmanaged.passRetained(self).toOpaque()
    }
}

/// What the connection reports: disconnections, reconnections, the final close, and asynchronous errors
/// (a slow consumer, say).
public enum NATSConnectionEvent: Sendable, Hashable {
    case disconnected
    case reconnected(server: String)
    case closed
    case error(String)
}

/// The object behind the connection's callbacks' closure pointer.
final class NATSConnectionEventContext: Sendable {
    let report: @Sendable (NATSConnectionEvent) -> Void

    init(report: @escaping @Sendable (NATSConnectionEvent) -> Void) {
        self.report = report
    }
}

// The C callbacks. Each copies out of nats.c's structures and never keeps a pointer past its return.

func natsCoreMessageCallback(
    _ connection: OpaquePointer?,
    _ subscription: OpaquePointer?,
    _ message: OpaquePointer?,
    _ closure: UnsafeMutableRawPointer?
) {
    guard let message else { return }
    defer { natsMsg_Destroy(message) }
    guard let closure else { return }
    let context = Unmanaged<NATSDeliveryContext<NATSMessage>>.fromOpaque(closure).takeUnretainedValue()
    context.deliver(NATSMessage(subject: subjectOf(message), payload: payloadOf(message)))
}

func natsStreamMessageCallback(
    _ connection: OpaquePointer?,
    _ subscription: OpaquePointer?,
    _ message: OpaquePointer?,
    _ closure: UnsafeMutableRawPointer?
) {
    guard let message else { return }
    defer { natsMsg_Destroy(message) }
    guard let closure else { return }
    let context = Unmanaged<NATSDeliveryContext<NATSStreamMessage>>.fromOpaque(closure).takeUnretainedValue()
    var metadata: UnsafeMutablePointer<jsMsgMetaData>?
    guard natsMsg_GetMetaData(&metadata, message) == NATS_OK, let metadata else { return }
    defer { jsMsgMetaData_Destroy(metadata) }
    context.deliver(
        NATSStreamMessage(
            subject: subjectOf(message),
            payload: payloadOf(message),
            streamSequence: metadata.pointee.Sequence.Stream,
            storedAtNanoseconds: metadata.pointee.Timestamp,
            pendingAfter: metadata.pointee.NumPending
        )
    )
}

func natsCoreSubscriptionCompleted(_ closure: UnsafeMutableRawPointer?) {
    finishDelivery(closure, of: NATSMessage.self)
}

func natsStreamSubscriptionCompleted(_ closure: UnsafeMutableRawPointer?) {
    finishDelivery(closure, of: NATSStreamMessage.self)
}

/// After a subscription's last message: ends its sequence and releases its context.
private func finishDelivery<Message: Sendable>(_ closure: UnsafeMutableRawPointer?, of: Message.Type) {
    guard let closure else { return }
    Unmanaged<NATSDeliveryContext<Message>>.fromOpaque(closure).takeRetainedValue().finish()
}

func natsDisconnectedCallback(_ connection: OpaquePointer?, _ closure: UnsafeMutableRawPointer?) {
    eventContext(closure)?.report(.disconnected)
}

func natsReconnectedCallback(_ connection: OpaquePointer?, _ closure: UnsafeMutableRawPointer?) {
    var buffer = [CChar](repeating: 0, count: 256)
    let server =
        natsConnection_GetConnectedUrl(connection, &buffer, buffer.count) == NATS_OK
        ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    eventContext(closure)?.report(.reconnected(server: server))
}

func natsClosedCallback(_ connection: OpaquePointer?, _ closure: UnsafeMutableRawPointer?) {
    eventContext(closure)?.report(.closed)
}

func natsErrorCallback(
    _ connection: OpaquePointer?,
    _ subscription: OpaquePointer?,
    _ status: natsStatus,
    _ closure: UnsafeMutableRawPointer?
) {
    eventContext(closure)?.report(.error(String(cString: natsStatus_GetText(status))))
}

private func eventContext(_ closure: UnsafeMutableRawPointer?) -> NATSConnectionEventContext? {
    closure.map { Unmanaged<NATSConnectionEventContext>.fromOpaque($0).takeUnretainedValue() }
}

private func subjectOf(_ message: OpaquePointer) -> String {
    natsMsg_GetSubject(message).map { String(cString: $0) } ?? ""
}

private func payloadOf(_ message: OpaquePointer) -> [UInt8] {
    let count = Int(natsMsg_GetDataLength(message))
    guard count > 0, let data = natsMsg_GetData(message) else { return [] }
    return [UInt8](UnsafeRawBufferPointer(start: data, count: count))
}
