import Logging
import NATS
import ServiceLifecycle
import Synchronization

/// What the engine does when its leases change. Called from the lease service's tasks, one call at a time.
public protocol PartitionLeaseDelegate: Sendable {
    /// This engine owns `partition` from now on, under `epoch` (the lease's creation revision: it grows with
    /// every new owner, so it fences a deposed owner's late writes and commands). Load the partition's state
    /// and start reading; return quickly (renewals wait for this call).
    func leaseAcquired(partition: Int, epoch: UInt64) async
    /// No renewal was confirmed in time, or another engine holds the lease: stop evaluating and emitting for
    /// `partition` at once, before returning.
    func leaseLost(partition: Int, reason: String)
    /// The lease is handed over (balance or shutdown): stop, write the partition's last state; the lease is
    /// deleted after this returns.
    func leaseWillBeReleased(partition: Int, epoch: UInt64) async
}

/// Takes, renews and hands back partition leases in a NATS key-value bucket, so each partition has at most one
/// engine at a time and every live engine gets its fair share.
///
/// A lease is the key `partition.<N>`, created (refused when it exists) and then renewed with the revision
/// last written (refused when anyone else wrote since). The bucket's TTL expires a lease that is not
/// renewed. The engine counts a lease as its own only until `ownershipWindow` after the start of the last
/// confirmed renewal, which ends before the key can expire: a partitioned or paused engine stops before a
/// rival can start.
public final class PartitionLeaseService: Service, Sendable {
    private struct Lease {
        var epoch: UInt64
        var revision: UInt64
        var confirmedAt: ContinuousClock.Instant
    }

    private let configuration: PartitionLeaseConfiguration
    private let connection: NATSConnection
    private let delegate: any PartitionLeaseDelegate
    private let logger: Logger
    private let owned = Mutex<[Int: Lease]>([:])
    private let renewals = Atomic<Int>(0)
    private let ownerValue: [UInt8]
    private let offset: Int

    /// Creates the service; `run()` starts it.
    public init(
        configuration: PartitionLeaseConfiguration,
        connection: NATSConnection,
        delegate: any PartitionLeaseDelegate,
        logger: Logger
    ) {
        self.configuration = configuration
        self.connection = connection
        self.delegate = delegate
        self.logger = logger
        self.ownerValue = Array(configuration.owner.utf8)
        // A stable starting point per engine: where its name would land as a device.
        self.offset = DevicePartitioning(partitions: configuration.partitions).partition(ofDevice: configuration.owner)
    }

    /// The partitions this engine owns now, with each one's epoch.
    public var ownedPartitions: [Int: UInt64] {
        owned.withLock { leases in leases.mapValues(\.epoch) }
    }

    /// How many renewals the servers confirmed so far.
    public var renewalsConfirmed: Int { renewals.load(ordering: .relaxed) }

    /// Renews and balances until graceful shutdown (or cancellation), then hands every lease back.
    public func run() async throws {
        let leases: NATSKeyValue
        do {
            leases = try await cancelWhenGracefulShutdown { try await self.openBucket() }
        } catch is CancellationError {
            return  // shut down before the bucket answered: nothing was taken
        }
        do {
            try await cancelWhenGracefulShutdown { try await self.renewAndWatch(leases) }
        } catch is CancellationError {
            // Shutting down: hand everything back below.
        }
        await releaseEverything(leases)
    }

    /// A cluster that is still electing its JetStream leader refuses for a while: try until it answers.
    private func openBucket() async throws -> NATSKeyValue {
        while true {
            do {
                return try await connection.keyValue(
                    bucket: configuration.bucket,
                    ttl: configuration.ttl,
                    replicas: configuration.replicas
                )
            } catch {
                logger.debug("lease bucket not ready", metadata: ["error": "\(error)"])
                try await Task.sleep(for: configuration.renewInterval)
            }
        }
    }

    /// Three loops: renewals (never behind anything else), deadlines, and balancing (which lists the bucket
    /// and may be slow when a server is away).
    private func renewAndWatch(_ leases: NATSKeyValue) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.watchDeadlines() }
            group.addTask {
                while true {
                    await self.renew(leases)
                    try await Task.sleep(for: self.configuration.renewInterval)
                }
            }
            group.addTask {
                while true {
                    await self.balance(leases)
                    try await Task.sleep(for: self.configuration.renewInterval)
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Renews every owned lease with the revision it last wrote.
    private func renew(_ leases: NATSKeyValue) async {
        for (partition, lease) in owned.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            let started = ContinuousClock.now
            do {
                let revision = try await leases.update(
                    PartitionLeaseConfiguration.leaseKey(partition),
                    ownerValue,
                    expectedRevision: lease.revision
                )
                owned.withLock { leases in
                    // Lost meanwhile (the window passed): the renewal came too late to count.
                    guard var current = leases[partition], current.revision == lease.revision else { return }
                    current.revision = revision
                    current.confirmedAt = started
                    leases[partition] = current
                }
                renewals.add(1, ordering: .relaxed)
            } catch let error as NATSError where error.kind == .revisionMismatch {
                lose(partition, epoch: lease.epoch, reason: "another engine holds its lease")
            } catch {
                logger.debug("lease renewal failed", metadata: ["partition": "\(partition)", "error": "\(error)"])
            }
        }
    }

    /// Heartbeat, then take or hand back toward the fair share.
    private func balance(_ leases: NATSKeyValue) async {
        let memberKey = PartitionLeaseConfiguration.memberKey(configuration.owner)
        do {
            try await leases.put(memberKey, ownerValue)
        } catch {
            logger.debug("member heartbeat failed", metadata: ["error": "\(error)"])
        }
        let keys: [String]
        do {
            keys = try await leases.keys()
        } catch {
            logger.debug("listing leases failed", metadata: ["error": "\(error)"])
            return
        }
        let held = Set(
            keys.compactMap { key -> Int? in
                guard key.hasPrefix("partition.") else { return nil }
                return Int(key.dropFirst("partition.".count))
            }
        )
        let engines = max(1, keys.filter { $0.hasPrefix("member.") }.count)
        let mine = Set(owned.withLock { $0.keys })
        let plan = LeasePlan.plan(
            partitions: configuration.partitions,
            owned: mine,
            held: held,
            engines: engines,
            offset: offset
        )
        for partition in plan.release {
            await release(partition, leases)
        }
        for partition in plan.acquire {
            let started = ContinuousClock.now
            do {
                let revision = try await leases.create(PartitionLeaseConfiguration.leaseKey(partition), ownerValue)
                await acquired(partition, revision: revision, at: started)
            } catch {
                logger.debug("lease not acquired", metadata: ["partition": "\(partition)", "error": "\(error)"])
            }
        }
        if mine.count + plan.acquire.count < LeasePlan.fairShare(partitions: configuration.partitions, engines: engines)
        {
            await adoptOwnLeases(held: held, leases)
        }
    }

    private func acquired(_ partition: Int, revision: UInt64, at started: ContinuousClock.Instant) async {
        owned.withLock { $0[partition] = Lease(epoch: revision, revision: revision, confirmedAt: started) }
        logger.debug("lease acquired", metadata: ["partition": "\(partition)", "epoch": "\(revision)"])
        await delegate.leaseAcquired(partition: partition, epoch: revision)
    }

    /// A lease in this engine's name that it does not count as its own: a create whose answer timed out
    /// although the server wrote it, or a lease declared lost whose key has not expired yet. Nobody else can
    /// hold it, so this engine takes it back by updating it at its revision (a new epoch) instead of
    /// waiting for the TTL.
    private func adoptOwnLeases(held: Set<Int>, _ leases: NATSKeyValue) async {
        let mine = Set(owned.withLock { $0.keys })
        for partition in held.subtracting(mine).sorted() {
            let key = PartitionLeaseConfiguration.leaseKey(partition)
            guard let entry = try? await leases.get(key), entry.value == ownerValue else { continue }
            let started = ContinuousClock.now
            do {
                let revision = try await leases.update(key, ownerValue, expectedRevision: entry.revision)
                await acquired(partition, revision: revision, at: started)
            } catch {
                logger.debug("own lease not adopted", metadata: ["partition": "\(partition)", "error": "\(error)"])
            }
        }
    }

    /// Declares a lease lost as soon as its ownership window passes without a confirmed renewal, however long
    /// a renewal request is stuck.
    private func watchDeadlines() async throws {
        let window = configuration.ownershipWindow
        while true {
            let now = ContinuousClock.now
            let expired = owned.withLock { leases in
                leases.filter { now >= $0.value.confirmedAt + window }
            }
            for (partition, lease) in expired.sorted(by: { $0.key < $1.key }) {
                lose(partition, epoch: lease.epoch, reason: "no renewal confirmed within \(window)")
            }
            let earliest = owned.withLock { leases in leases.values.map { $0.confirmedAt + window }.min() }
            let wake = min(earliest ?? .now + configuration.renewInterval, .now + configuration.renewInterval)
            try await Task.sleep(until: wake, clock: .continuous)
        }
    }

    private func lose(_ partition: Int, epoch: UInt64, reason: String) {
        let removed = owned.withLock { leases -> Bool in
            guard leases[partition]?.epoch == epoch else { return false }
            leases[partition] = nil
            return true
        }
        guard removed else { return }
        logger.debug("lease lost", metadata: ["partition": "\(partition)", "epoch": "\(epoch)", "reason": "\(reason)"])
        delegate.leaseLost(partition: partition, reason: reason)
    }

    private func release(_ partition: Int, _ leases: NATSKeyValue) async {
        guard let lease = owned.withLock({ $0.removeValue(forKey: partition) }) else { return }
        await delegate.leaseWillBeReleased(partition: partition, epoch: lease.epoch)
        do {
            // Only our own lease: if it changed hands meanwhile, the update is refused and nothing is deleted.
            _ = try await leases.update(
                PartitionLeaseConfiguration.leaseKey(partition),
                [],
                expectedRevision: lease.revision
            )
            try await leases.delete(PartitionLeaseConfiguration.leaseKey(partition))
            logger.debug("lease released", metadata: ["partition": "\(partition)", "epoch": "\(lease.epoch)"])
        } catch {
            logger.debug(
                "lease release failed; it expires",
                metadata: ["partition": "\(partition)", "error": "\(error)"]
            )
        }
    }

    private func releaseEverything(_ leases: NATSKeyValue) async {
        for partition in owned.withLock({ $0.keys.sorted() }) {
            await release(partition, leases)
        }
        try? await leases.delete(PartitionLeaseConfiguration.memberKey(configuration.owner))
    }
}
