import CMosquitto

/// What the network thread reports. Implementations copy what they need and return quickly.
protocol MosquittoEventReceiver: AnyObject, Sendable {
    func mosquittoDidConnect(reasonCode: Int32, sessionPresent: Bool)
    func mosquittoDidDisconnect(code: Int32)
    func mosquittoDidPublish(messageID: Int32, reasonCode: Int32)
    func mosquittoDidSubscribe(messageID: Int32, grantedQoS: [Int32])
    func mosquittoDidUnsubscribe(messageID: Int32)
    func mosquittoDidReceive(_ message: MQTTMessage)
    func mosquittoDidReceiveOversizeMessage(topic: String, size: Int)
    func mosquittoDidLog(level: Int32, message: String)
    var maximumPayloadSize: Int { get }
    /// Whether libmosquitto's debug lines (one per packet) are wanted; when not, they are not even copied.
    var wantsLibraryDebugLog: Bool { get }
}

/// The object behind `mosquitto_new`'s `obj` pointer: carries the receiver into the C callbacks.
final class MosquittoCallbackContext {
    let receiver: any MosquittoEventReceiver

    init(receiver: any MosquittoEventReceiver) {
        self.receiver = receiver
    }

    static func register(on mosq: OpaquePointer) {
        mosquitto_connect_v5_callback_set(mosq) { _, obj, reasonCode, flags, _ in
            callbackReceiver(obj)?.mosquittoDidConnect(reasonCode: reasonCode, sessionPresent: flags & 1 != 0)
        }
        mosquitto_disconnect_v5_callback_set(mosq) { _, obj, code, _ in
            callbackReceiver(obj)?.mosquittoDidDisconnect(code: code)
        }
        mosquitto_publish_v5_callback_set(mosq) { _, obj, messageID, reasonCode, _ in
            callbackReceiver(obj)?.mosquittoDidPublish(messageID: messageID, reasonCode: reasonCode)
        }
        mosquitto_subscribe_v5_callback_set(mosq) { _, obj, messageID, count, granted, _ in
            let codes = granted.map { Array(UnsafeBufferPointer(start: $0, count: Int(count))) } ?? []
            callbackReceiver(obj)?.mosquittoDidSubscribe(messageID: messageID, grantedQoS: codes)
        }
        mosquitto_unsubscribe_v5_callback_set(mosq) { _, obj, messageID, _ in
            callbackReceiver(obj)?.mosquittoDidUnsubscribe(messageID: messageID)
        }
        mosquitto_message_v5_callback_set(mosq) { _, obj, message, _ in
            guard let receiver = callbackReceiver(obj), let message = message?.pointee else { return }
            let topic = String(cString: message.topic)
            let size = Int(message.payloadlen)
            guard size <= receiver.maximumPayloadSize else {
                receiver.mosquittoDidReceiveOversizeMessage(topic: topic, size: size)
                return
            }
            let payload = [UInt8](UnsafeRawBufferPointer(start: message.payload, count: size))
            receiver.mosquittoDidReceive(
                MQTTMessage(
                    topic: topic,
                    payload: payload,
                    qos: MQTTQoS(rawValue: Int(message.qos)) ?? .atMostOnce,
                    retain: message.retain
                )
            )
        }
        setLibraryLog(on: mosq, enabled: true)
    }

    /// libmosquitto formats a line (malloc, vsnprintf, free) for every packet whenever a log callback is set, so
    /// the callback is set only while it is wanted: while connecting (its warnings explain a failure) or at trace.
    static func setLibraryLog(on mosq: OpaquePointer, enabled: Bool) {
        guard enabled else {
            mosquitto_log_callback_set(mosq, nil)
            return
        }
        mosquitto_log_callback_set(mosq) { _, obj, level, text in
            guard let text, let receiver = callbackReceiver(obj) else { return }
            guard level != MOSQ_LOG_DEBUG || receiver.wantsLibraryDebugLog else { return }
            receiver.mosquittoDidLog(level: level, message: String(cString: text))
        }
    }
}

private func callbackReceiver(_ obj: UnsafeMutableRawPointer?) -> (any MosquittoEventReceiver)? {
    guard let obj else { return nil }
    return Unmanaged<MosquittoCallbackContext>.fromOpaque(obj).takeUnretainedValue().receiver
}
