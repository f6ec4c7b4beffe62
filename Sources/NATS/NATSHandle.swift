import CNATS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns one `natsConnection *` and its JetStream context, and is the only place (with the callbacks) that
/// calls nats.c.
///
/// nats.c is thread safe for every call made here, hence `@unchecked Sendable`. Each call here blocks its
/// thread until nats.c answers (JetStream and key-value calls are requests with a timeout), so the public
/// API runs them off the cooperative pool.
final class NATSHandle: @unchecked Sendable {
    private let connection: OpaquePointer
    private let jetStream: OpaquePointer
    private let events: Unmanaged<NATSConnectionEventContext>

    init(
        servers: [String],
        name: String,
        requestTimeoutMilliseconds: Int64,
        reconnectWaitMilliseconds: Int64,
        events: NATSConnectionEventContext
    ) throws {
        var options: OpaquePointer?
        try Self.check(natsOptions_Create(&options), "creating connection options")
        defer { natsOptions_Destroy(options) }
        let copies = servers.map { strdup($0) }
        defer { for copy in copies { free(copy) } }
        var serverList = copies.map { UnsafePointer<CChar>($0) }
        try Self.check(natsOptions_SetServers(options, &serverList, Int32(serverList.count)), "setting the servers")
        try Self.check(natsOptions_SetName(options, name), "setting the name")
        try Self.check(natsOptions_SetTimeout(options, requestTimeoutMilliseconds), "setting the connect timeout")
        try Self.check(natsOptions_SetMaxReconnect(options, -1), "setting reconnection")
        try Self.check(natsOptions_SetReconnectWait(options, reconnectWaitMilliseconds), "setting the reconnect wait")
        let retained = Unmanaged.passRetained(events)
        let closure = retained.toOpaque()
        try Self.check(natsOptions_SetDisconnectedCB(options, natsDisconnectedCallback, closure), "setting callbacks")
        try Self.check(natsOptions_SetReconnectedCB(options, natsReconnectedCallback, closure), "setting callbacks")
        try Self.check(natsOptions_SetClosedCB(options, natsClosedCallback, closure), "setting callbacks")
        try Self.check(natsOptions_SetErrorHandler(options, natsErrorCallback, closure), "setting callbacks")
        var newConnection: OpaquePointer?
        let status = natsConnection_Connect(&newConnection, options)
        guard status == NATS_OK, let newConnection else {
            retained.release()
            throw Self.error(status, "connecting to \(servers.joined(separator: ","))")
        }
        var context: OpaquePointer?
        var jetStreamOptions = jsOptions()
        jsOptions_Init(&jetStreamOptions)
        jetStreamOptions.Wait = requestTimeoutMilliseconds
        let jetStreamStatus = natsConnection_JetStream(&context, newConnection, &jetStreamOptions)
        guard jetStreamStatus == NATS_OK, let context else {
            natsConnection_Destroy(newConnection)
            retained.release()
            throw Self.error(jetStreamStatus, "opening JetStream")
        }
        self.connection = newConnection
        self.jetStream = context
        self.events = retained
    }

    deinit {
        natsConnection_Close(connection)
        jsCtx_Destroy(jetStream)
        natsConnection_Destroy(connection)
        // The closed callback may still be running on nats.c's thread; the context is small, so it is kept.
    }

    func close() {
        natsConnection_Close(connection)
    }

    var connectedServer: String? {
        var buffer = [CChar](repeating: 0, count: 256)
        guard natsConnection_GetConnectedUrl(connection, &buffer, buffer.count) == NATS_OK else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var isConnected: Bool {
        natsConnection_Status(connection) == NATS_CONN_STATUS_CONNECTED
    }

    // MARK: Core NATS

    func publish(_ payload: [UInt8], to subject: String) throws {
        let status = payload.withUnsafeBytes { bytes in
            natsConnection_Publish(connection, subject, bytes.baseAddress, Int32(bytes.count))
        }
        try Self.check(status, "publishing to '\(subject)'")
    }

    func flush(timeoutMilliseconds: Int64) throws {
        try Self.check(natsConnection_FlushTimeout(connection, timeoutMilliseconds), "flushing")
    }

    func subscribe(to subject: String, context: NATSDeliveryContext<NATSMessage>) throws -> NATSSubscriptionHandle {
        let closure = context.retainedPointer()
        var subscription: OpaquePointer?
        let status = natsConnection_Subscribe(&subscription, connection, subject, natsCoreMessageCallback, closure)
        guard status == NATS_OK, let subscription else {
            Unmanaged<NATSDeliveryContext<NATSMessage>>.fromOpaque(closure).release()
            throw Self.error(status, "subscribing to '\(subject)'")
        }
        natsSubscription_SetOnCompleteCB(subscription, natsCoreSubscriptionCompleted, closure)
        return NATSSubscriptionHandle(subscription, owner: self)
    }

    // MARK: JetStream

    func addStream(name: String, subjects: [String], replicas: Int, maximumAgeNanoseconds: Int64) throws {
        var configuration = jsStreamConfig()
        jsStreamConfig_Init(&configuration)
        let copies = subjects.map { strdup($0) }
        defer { for copy in copies { free(copy) } }
        var subjectList = copies.map { UnsafePointer<CChar>($0) }
        var code = jsErrCode(rawValue: 0)
        let status = name.withCString { cName in
            subjectList.withUnsafeMutableBufferPointer { list in
                configuration.Name = cName
                configuration.Subjects = list.baseAddress
                configuration.SubjectsLen = Int32(list.count)
                configuration.Storage = js_FileStorage
                configuration.Replicas = Int64(replicas)
                configuration.MaxAge = maximumAgeNanoseconds
                var info: UnsafeMutablePointer<jsStreamInfo>?
                let status = js_AddStream(&info, jetStream, &configuration, nil, &code)
                if let info { jsStreamInfo_Destroy(info) }
                return status
            }
        }
        try Self.check(status, "creating stream '\(name)'", code: code)
    }

    func publishToStream(_ payload: [UInt8], subject: String, expectedLastSubjectSequence: UInt64 = 0) throws -> UInt64
    {
        var code = jsErrCode(rawValue: 0)
        var acknowledgement: UnsafeMutablePointer<jsPubAck>?
        var options = jsPubOptions()
        jsPubOptions_Init(&options)
        options.ExpectLastSubjectSeq = expectedLastSubjectSequence
        let status = payload.withUnsafeBytes { bytes in
            js_Publish(&acknowledgement, jetStream, subject, bytes.baseAddress, Int32(bytes.count), &options, &code)
        }
        defer { if let acknowledgement { jsPubAck_Destroy(acknowledgement) } }
        try Self.check(status, "publishing to '\(subject)' in JetStream", code: code)
        return acknowledgement?.pointee.Sequence ?? 0
    }

    /// The last message a stream holds on `subject`, or nil when it holds none.
    func lastMessage(inStream stream: String, subject: String) throws -> NATSStreamMessage? {
        var code = jsErrCode(rawValue: 0)
        var message: OpaquePointer?
        let status = js_GetLastMsg(&message, jetStream, stream, subject, nil, &code)
        defer { if let message { natsMsg_Destroy(message) } }
        if status == NATS_NOT_FOUND || code == JSNoMessageFoundErr { return nil }
        try Self.check(status, "reading the last message on '\(subject)' in stream '\(stream)'", code: code)
        guard let message else { return nil }
        let count = Int(natsMsg_GetDataLength(message))
        let payload = natsMsg_GetData(message).map { [UInt8](UnsafeRawBufferPointer(start: $0, count: count)) } ?? []
        return NATSStreamMessage(
            subject: subject,
            payload: count > 0 ? payload : [],
            streamSequence: natsMsg_GetSequence(message),
            storedAtNanoseconds: natsMsg_GetTime(message),
            pendingAfter: 0
        )
    }

    /// The subjects that hold messages in a stream, among those matching `filter` (from the stream's state: no
    /// consumer is made).
    func subjects(inStream stream: String, matching filter: String) throws -> [String] {
        var options = jsOptions()
        jsOptions_Init(&options)
        var code = jsErrCode(rawValue: 0)
        var info: UnsafeMutablePointer<jsStreamInfo>?
        let status = filter.withCString { cFilter in
            options.Stream.Info.SubjectsFilter = cFilter
            return js_GetStreamInfo(&info, jetStream, stream, &options, &code)
        }
        try Self.check(status, "reading the subjects of stream '\(stream)'", code: code)
        guard let info else { return [] }
        defer { jsStreamInfo_Destroy(info) }
        guard let subjects = info.pointee.State.Subjects?.pointee, let list = subjects.List else { return [] }
        return (0..<Int(subjects.Count)).compactMap { index in list[index].Subject.map { String(cString: $0) } }
    }

    func messageCount(inStream stream: String) throws -> UInt64 {
        var code = jsErrCode(rawValue: 0)
        var info: UnsafeMutablePointer<jsStreamInfo>?
        let status = js_GetStreamInfo(&info, jetStream, stream, nil, &code)
        try Self.check(status, "reading the state of stream '\(stream)'", code: code)
        defer { if let info { jsStreamInfo_Destroy(info) } }
        return info?.pointee.State.Msgs ?? 0
    }

    /// An ordered consumer: ephemeral, no acknowledgements, recreated by nats.c after a gap, delivering in
    /// stream order from `startSequence` (0: from the first message).
    func readStream(
        _ stream: String,
        filter: String,
        startSequence: UInt64,
        context: NATSDeliveryContext<NATSStreamMessage>
    ) throws -> NATSSubscriptionHandle {
        let closure = context.retainedPointer()
        var options = jsSubOptions()
        jsSubOptions_Init(&options)
        var code = jsErrCode(rawValue: 0)
        var subscription: OpaquePointer?
        let status = stream.withCString { cStream in
            options.Stream = cStream
            options.Ordered = true
            if startSequence > 0 {
                options.Config.DeliverPolicy = js_DeliverByStartSequence
                options.Config.OptStartSeq = startSequence
            } else {
                options.Config.DeliverPolicy = js_DeliverAll
            }
            return js_Subscribe(
                &subscription,
                jetStream,
                filter,
                natsStreamMessageCallback,
                closure,
                nil,
                &options,
                &code
            )
        }
        guard status == NATS_OK, let subscription else {
            Unmanaged<NATSDeliveryContext<NATSStreamMessage>>.fromOpaque(closure).release()
            throw Self.error(status, "reading stream '\(stream)' (\(filter)) from \(startSequence)", code: code)
        }
        natsSubscription_SetOnCompleteCB(subscription, natsStreamSubscriptionCompleted, closure)
        return NATSSubscriptionHandle(subscription, owner: self)
    }

    // MARK: Key-value

    func keyValue(bucket: String, history: Int, ttlNanoseconds: Int64, replicas: Int) throws -> NATSKeyValueHandle {
        var configuration = kvConfig()
        kvConfig_Init(&configuration)
        var store: OpaquePointer?
        let status = bucket.withCString { cBucket in
            configuration.Bucket = cBucket
            configuration.History = UInt8(clamping: history)
            configuration.TTL = ttlNanoseconds
            configuration.Replicas = Int32(replicas)
            configuration.StorageType = js_FileStorage
            return js_CreateKeyValue(&store, jetStream, &configuration)
        }
        guard status == NATS_OK, let store else { throw Self.error(status, "opening key-value bucket '\(bucket)'") }
        return NATSKeyValueHandle(store, bucket: bucket, owner: self)
    }

    // MARK: Errors

    static func check(_ status: natsStatus, _ doing: String, code: jsErrCode = jsErrCode(rawValue: 0)) throws {
        guard status == NATS_OK else { throw error(status, doing, code: code) }
    }

    static func error(_ status: natsStatus, _ doing: String, code: jsErrCode = jsErrCode(rawValue: 0)) -> NATSError {
        var lastStatus = NATS_OK
        var detail = nats_GetLastError(&lastStatus).map { String(cString: $0) } ?? ""
        // nats.c prefixes its detail with its source location: "(conn.c:2088): ".
        if detail.hasPrefix("("), let end = detail.firstRange(of: "): ") { detail = String(detail[end.upperBound...]) }
        let text = String(cString: natsStatus_GetText(status))
        let message = "NATS: \(doing): " + (detail.isEmpty || detail == text ? text : "\(text): \(detail)")
        let jetStreamCode = code.rawValue == 0 ? nil : Int32(code.rawValue)
        let kind: NATSError.Kind
        switch status {
        case NATS_TIMEOUT: kind = .timeout
        case NATS_NOT_FOUND: kind = .notFound
        case NATS_CONNECTION_CLOSED: kind = .closed
        case NATS_NO_SERVER, NATS_CONNECTION_DISCONNECTED, NATS_NOT_YET_CONNECTED: kind = .notConnected
        default:
            if code == JSStreamWrongLastSequenceErr || detail.contains("wrong last sequence")
                || detail.contains("key exists")
            {
                kind = .revisionMismatch
            } else if code == JSStreamNotFoundErr {
                kind = .notFound
            } else {
                kind = .library
            }
        }
        return NATSError(kind, message, status: Int32(status.rawValue), jetStreamCode: jetStreamCode)
    }
}

/// One `natsSubscription *`. Unsubscribing ends it; its completion callback then finishes its message
/// sequence and releases its delivery context.
final class NATSSubscriptionHandle: @unchecked Sendable {
    private let subscription: OpaquePointer
    private let owner: NATSHandle

    init(_ subscription: OpaquePointer, owner: NATSHandle) {
        self.subscription = subscription
        self.owner = owner
    }

    deinit {
        natsSubscription_Unsubscribe(subscription)
        natsSubscription_Destroy(subscription)
    }

    func unsubscribe() {
        natsSubscription_Unsubscribe(subscription)
    }
}

/// One `kvStore *`: a bucket's writes with expected revisions.
final class NATSKeyValueHandle: @unchecked Sendable {
    private let store: OpaquePointer
    private let owner: NATSHandle
    let bucket: String

    init(_ store: OpaquePointer, bucket: String, owner: NATSHandle) {
        self.store = store
        self.bucket = bucket
        self.owner = owner
    }

    deinit {
        kvStore_Destroy(store)
    }

    func create(_ key: String, _ value: [UInt8]) throws -> UInt64 {
        let doing = "creating '\(key)' in bucket '\(bucket)'"
        do {
            return try write(value, doing) { revision, data, length in
                kvStore_Create(revision, store, key, data, length)
            }
        } catch let error as NATSError where error.status == Int32(NATS_ERR.rawValue) {
            // nats.c's create writes, and when refused reads the key to tell a tombstone from a live key; a key
            // that expires between the two leaves a bare "Error" (the read's failure replaced the write's).
            // Once more: the key is gone (the write succeeds) or there (refused as a revision mismatch).
            return try write(value, doing) { revision, data, length in
                kvStore_Create(revision, store, key, data, length)
            }
        }
    }

    func update(_ key: String, _ value: [UInt8], expectedRevision: UInt64) throws -> UInt64 {
        try write(value, "updating '\(key)' in bucket '\(bucket)' at revision \(expectedRevision)") {
            revision,
            data,
            length in
            kvStore_Update(revision, store, key, data, length, expectedRevision)
        }
    }

    func put(_ key: String, _ value: [UInt8]) throws -> UInt64 {
        try write(value, "putting '\(key)' in bucket '\(bucket)'") { revision, data, length in
            kvStore_Put(revision, store, key, data, length)
        }
    }

    /// One write: `call` gets where to put the new revision and the value's bytes.
    private func write(
        _ value: [UInt8],
        _ doing: String,
        _ call: (UnsafeMutablePointer<UInt64>, UnsafeRawPointer?, Int32) -> natsStatus
    ) throws -> UInt64 {
        var revision: UInt64 = 0
        let status = value.withUnsafeBytes { bytes in call(&revision, bytes.baseAddress, Int32(bytes.count)) }
        try NATSHandle.check(status, doing)
        return revision
    }

    func get(_ key: String) throws -> NATSKeyValueEntry? {
        var entry: OpaquePointer?
        let status = kvStore_Get(&entry, store, key)
        if status == NATS_NOT_FOUND { return nil }
        try NATSHandle.check(status, "reading '\(key)' in bucket '\(bucket)'")
        guard let entry else { return nil }
        defer { kvEntry_Destroy(entry) }
        let count = Int(kvEntry_ValueLen(entry))
        let value = count > 0 ? [UInt8](UnsafeRawBufferPointer(start: kvEntry_Value(entry), count: count)) : []
        return NATSKeyValueEntry(key: key, value: value, revision: kvEntry_Revision(entry))
    }

    /// The keys with a value now. nats.c's own `kvStore_Keys` (a watcher) was seen to time out on a 3-node
    /// cluster while the same calls answered in milliseconds; this reads the bucket stream's subjects instead
    /// and drops deleted keys (whose last message is a delete marker).
    func keys() throws -> [String] {
        let prefix = "$KV.\(bucket)."
        let subjects = try owner.subjects(inStream: "KV_\(bucket)", matching: prefix + ">")
        return try subjects.compactMap { subject -> String? in
            guard subject.hasPrefix(prefix) else { return nil }
            let key = String(subject.dropFirst(prefix.count))
            return try get(key) == nil ? nil : key
        }
    }

    func delete(_ key: String) throws {
        try NATSHandle.check(kvStore_Delete(store, key), "deleting '\(key)' in bucket '\(bucket)'")
    }
}
